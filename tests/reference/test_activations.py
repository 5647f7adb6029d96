"""reference.activations: values, first and second derivatives against central differences and formulas."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reference.activations import ACTIVATIONS, Activation, get_activation, sigmoid
from tests.helpers.finite_diff import numerical_derivative
from tests.helpers.strategies import leaky_slopes

SLOPES = (0.0, 0.01, 0.2, 0.5, 0.9)
KINK_MARGIN = 1e-3  # |h| below this is too close to the kink at 0 for a central difference with eps 1e-5


def all_activations():
    """Every activation the reference has, LeakyReLU with several slopes."""
    params = []
    for name in ACTIVATIONS:
        if name == "leaky_relu":
            params += [pytest.param(get_activation(name, slope), id=f"leaky_relu-{slope}") for slope in SLOPES]
        else:
            params.append(pytest.param(get_activation(name), id=name))
    return params


def preactivations(max_abs=20.0):
    """Arrays of pre-activations h of any shape up to 2-D, finite, within [-max_abs, max_abs]."""
    return hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=16),
                      elements=st.floats(-max_abs, max_abs, allow_nan=False, allow_subnormal=False))


def away_from_kink(act: Activation, h: np.ndarray) -> np.ndarray:
    """h with the entries near 0 pushed out to +-KINK_MARGIN for the piecewise-linear activations."""
    if act.name in ("relu", "leaky_relu"):
        return np.where(np.abs(h) < KINK_MARGIN, np.where(h < 0, -KINK_MARGIN, KINK_MARGIN), h)
    return h


@pytest.mark.parametrize("act", all_activations())
@given(h=preactivations())
def test_derivative_matches_central_differences(act, h):
    h = away_from_kink(act, h)
    numeric = numerical_derivative(act.forward, h)
    analytic = act.derivative(h)
    assert analytic.shape == h.shape and analytic.dtype == np.float64
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("act", all_activations())
@given(h=preactivations())
def test_second_derivative_matches_central_differences_of_the_derivative(act, h):
    h = away_from_kink(act, h)
    numeric = numerical_derivative(act.derivative, h)
    analytic = act.second_derivative(h)
    assert analytic.shape == h.shape and analytic.dtype == np.float64
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


@given(slope=leaky_slopes(), h=preactivations(max_abs=1e3))
def test_leaky_relu_any_slope(slope, h):
    act = get_activation("leaky_relu", slope)
    h = away_from_kink(act, h)
    np.testing.assert_array_equal(act.forward(h), np.where(h > 0, h, slope * h))
    np.testing.assert_allclose(act.derivative(h), numerical_derivative(act.forward, h), rtol=1e-7, atol=1e-12)
    np.testing.assert_array_equal(act.second_derivative(h), np.zeros_like(h))


def test_values_against_textbook_formulas():
    h = np.linspace(-30.0, 30.0, 241)
    np.testing.assert_array_equal(get_activation("identity").forward(h), h)
    np.testing.assert_array_equal(get_activation("relu").forward(h), np.where(h > 0, h, 0.0))
    np.testing.assert_array_equal(get_activation("leaky_relu", 0.2).forward(h), np.where(h > 0, h, 0.2 * h))
    np.testing.assert_allclose(get_activation("tanh").forward(h), [math.tanh(v) for v in h], rtol=1e-15)
    # The right half only: 1/(1 + e^-h) is exact to an ulp there (see the tail test below for the left half).
    right = h[h >= 0]
    np.testing.assert_allclose(sigmoid(right), [1.0 / (1.0 + math.exp(-v)) for v in right], rtol=1e-15)
    assert sigmoid(np.float64(0.0)) == 0.5
    np.testing.assert_allclose(get_activation("sigmoid").derivative(np.array([0.0, 2.0])),
                               [0.25, math.exp(-2) / (1 + math.exp(-2)) ** 2], rtol=1e-14)
    np.testing.assert_allclose(get_activation("tanh").second_derivative(np.array([0.5])),
                               [-2 * math.tanh(0.5) / math.cosh(0.5) ** 2], rtol=1e-14)


def test_sigmoid_is_finite_and_exact_at_extreme_logits():
    h = np.array([-1e4, -800.0, 800.0, 1e4])
    # Underflow of e^-|h| to 0 is the correctly rounded result (numpy ignores it by default); everything else raises.
    with np.errstate(over="raise", divide="raise", invalid="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sigmoid(h)
        d = get_activation("sigmoid").derivative(h)
        d2 = get_activation("sigmoid").second_derivative(h)
        t = get_activation("tanh").derivative(h)
    # e^-800 underflows to 0 in float64, so these are the correctly rounded values.
    np.testing.assert_array_equal(s, [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(d, [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(d2, [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(t, [0.0, 0.0, 0.0, 0.0])


def test_sigmoid_keeps_relative_accuracy_in_the_left_tail():
    h = np.array([-20.0, -40.0, -300.0])
    expected = np.array([math.exp(v) / (1.0 + math.exp(v)) for v in h])  # e^h / (1 + e^h): no cancellation
    np.testing.assert_allclose(sigmoid(h), expected, rtol=1e-12)


def test_derivative_at_zero_is_the_left_hand_value():
    zero = np.zeros(3)
    np.testing.assert_array_equal(get_activation("relu").derivative(zero), [0.0, 0.0, 0.0])
    for slope in SLOPES:
        np.testing.assert_array_equal(get_activation("leaky_relu", slope).derivative(zero), [slope] * 3)
        np.testing.assert_array_equal(get_activation("leaky_relu", slope).second_derivative(zero), [0.0] * 3)
    np.testing.assert_array_equal(get_activation("relu").forward(np.array([-0.0, 0.0])), [0.0, 0.0])


def test_zero_convention_is_torchs():
    torch = pytest.importorskip("torch")
    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    torch.relu(x).sum().backward()
    assert x.grad.tolist() == get_activation("relu").derivative(np.zeros(2)).tolist()
    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.leaky_relu(x, 0.2).sum().backward()
    assert x.grad.tolist() == get_activation("leaky_relu", 0.2).derivative(np.zeros(2)).tolist()


@pytest.mark.parametrize("act", all_activations())
@given(h=preactivations(), seed=st.integers(0, 2**16))
def test_backward_is_upstream_times_derivative(act, h, seed):
    grad_y = np.random.default_rng(seed).standard_normal(h.shape)
    np.testing.assert_array_equal(act.backward(grad_y, h), grad_y * act.derivative(h))


@pytest.mark.parametrize("act", all_activations())
def test_float32_in_float32_out(act):
    h = np.linspace(-3, 3, 7, dtype=np.float32)
    for f in (act.forward, act.derivative, act.second_derivative):
        assert f(h).dtype == np.float32
