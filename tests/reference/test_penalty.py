"""reference.penalty: the per-sample input gradient, double backpropagation, and the three penalties."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from reference import gan, mlp, penalty
from reference.activations import sigmoid
from tests.helpers.finite_diff import assert_gradients_close, noise_floor, numerical_gradient, numerical_gradients
from tests.helpers.strategies import gan_specs, seeds
from tests.reference.test_gan_steps import EPS, ORDER, SMOOTHISH, min_abs_preactivation


def penalty_cases(loss=None, max_batch=3):
    """(spec, params, x_real, x_fake, mix) with smooth-ish activations, away from LeakyReLU's kink."""
    @st.composite
    def build(draw):
        spec = draw(gan_specs(loss=loss, max_depth=2, max_width=5, hidden_activations=SMOOTHISH))
        rng = np.random.default_rng(draw(seeds))
        params = gan.init_params(spec, int(rng.integers(2**31)))
        b = draw(st.integers(1, max_batch))
        x_real = rng.standard_normal((b, spec.data_size))
        x_fake = rng.standard_normal((b, spec.data_size))
        mix = rng.uniform(0, 1, (b, 1))
        for x in (x_real, x_fake, mix * x_real + (1 - mix) * x_fake):
            assume(min_abs_preactivation(spec.discriminator, mlp.forward(spec.discriminator, params, "D", x)[1]) > 1e-2)
        return spec, params, x_real, x_fake, mix
    return build()


def input_gradient_by_backward(spec, params, x):
    """g_n by mlp.backward with dL/dy = 1: the first-order code, itself checked against finite differences."""
    y, cache = mlp.forward(spec.discriminator, params, "D", x)
    return mlp.backward(spec.discriminator, params, "D", cache, np.ones_like(y))[0]


def penalty_by_backward(spec, kind, params, x_real, x_fake, mix):
    """Each penalty's value from its formula, with g from mlp.backward: the independent side."""
    if kind == "r1":
        g = input_gradient_by_backward(spec, params, x_real)
        return 0.5 * np.mean(np.sum(g**2, axis=1))
    if kind == "roth":
        p_real = sigmoid(gan.discriminate(spec, params, x_real))[:, 0]
        p_fake = sigmoid(gan.discriminate(spec, params, x_fake))[:, 0]
        g_real = input_gradient_by_backward(spec, params, x_real)
        g_fake = input_gradient_by_backward(spec, params, x_fake)
        return 0.5 * (np.mean((1 - p_real) ** 2 * np.sum(g_real**2, axis=1))
                      + np.mean(p_fake**2 * np.sum(g_fake**2, axis=1)))
    g = input_gradient_by_backward(spec, params, mix * x_real + (1 - mix) * x_fake)
    return np.mean((np.sqrt(np.sum(g**2, axis=1)) - 1) ** 2)


@given(case=penalty_cases())
def test_input_gradient_is_the_per_sample_derivative(case):
    spec, params, x_real, _, _ = case
    g, y, _ = penalty.input_gradient(spec.discriminator, params, "D", x_real)
    np.testing.assert_array_equal(y, gan.discriminate(spec, params, x_real))
    # against central differences of D's output, one sample at a time
    for n in range(len(x_real)):
        numeric = numerical_gradient(lambda row: gan.discriminate(spec, params, row[None])[0, 0], x_real[n], EPS, ORDER)
        assert_gradients_close(g[n], numeric, atol=1e-10)
    np.testing.assert_allclose(g, input_gradient_by_backward(spec, params, x_real), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("kind", penalty.PENALTIES)
@given(case=penalty_cases())
def test_penalty_gradient_matches_central_differences(kind, case):
    spec, params, x_real, x_fake, mix = case
    pen = penalty.PenaltySpec(kind, 1.0)
    value, grads = penalty.penalty_and_grads(spec, pen, params, x_real, x_fake, mix)
    assert list(grads) == list(mlp.param_shapes(spec.discriminator, "D"))
    expected = penalty_by_backward(spec, kind, params, x_real, x_fake, mix)
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-300)
    numeric = numerical_gradients(lambda p: penalty_by_backward(spec, kind, p, x_real, x_fake, mix),
                                  params, grads, EPS, ORDER)
    assert_gradients_close(grads, numeric, atol=noise_floor(max(value, 1.0)))


def test_weight_scales_value_and_gradient_and_zero_weight_is_zero():
    spec = gan.GANSpec(mlp.MLPSpec(2, (4,), 2, "tanh"), mlp.MLPSpec(2, (4,), 1, "tanh"), "nonsaturating")
    params = gan.init_params(spec, 3)
    rng = np.random.default_rng(0)
    x_real, x_fake, mix = rng.standard_normal((5, 2)), rng.standard_normal((5, 2)), rng.uniform(size=(5, 1))
    for kind in penalty.PENALTIES:
        v1, g1 = penalty.penalty_and_grads(spec, penalty.PenaltySpec(kind, 1.0), params, x_real, x_fake, mix)
        v3, g3 = penalty.penalty_and_grads(spec, penalty.PenaltySpec(kind, 3.0), params, x_real, x_fake, mix)
        v0, g0 = penalty.penalty_and_grads(spec, penalty.PenaltySpec(kind, 0.0), params, x_real, x_fake, mix)
        assert v3 == pytest.approx(3 * v1, rel=1e-15) and v0 == 0.0
        for k in g1:
            np.testing.assert_allclose(g3[k], 3 * g1[k], rtol=1e-15)
            assert np.all(g0[k] == 0)


def test_r1_of_a_linear_critic_is_half_its_squared_weight_norm():
    # D(x) = x @ W + b has g_n = W[:, 0] for every sample: R1 = |W|^2 / 2, dR1/dW = W, dR1/db = 0
    spec = gan.GANSpec(mlp.MLPSpec(2, (), 3), mlp.MLPSpec(3, (), 1), "minimax")
    params = gan.init_params(spec, 1)
    x = np.random.default_rng(1).standard_normal((4, 3))
    value, grads = penalty.penalty_and_grads(spec, penalty.PenaltySpec("r1", 1.0), params, x, x)
    w = params["D.0.weight"]
    assert value == pytest.approx(0.5 * np.sum(w**2), rel=1e-15)
    np.testing.assert_allclose(grads["D.0.weight"], w, rtol=1e-15)
    np.testing.assert_array_equal(grads["D.0.bias"], 0.0)


def test_wgan_gp_of_a_unit_norm_linear_critic_is_zero():
    # a linear critic with ||W|| = 1 is exactly 1-Lipschitz: the penalty and its gradient vanish
    spec = gan.GANSpec(mlp.MLPSpec(2, (), 2), mlp.MLPSpec(2, (), 1), "wasserstein")
    params = {**gan.init_params(spec, 0), "D.0.weight": np.array([[0.6], [0.8]])}
    rng = np.random.default_rng(2)
    x_real, x_fake, mix = rng.standard_normal((3, 2)), rng.standard_normal((3, 2)), rng.uniform(size=(3, 1))
    value, grads = penalty.penalty_and_grads(spec, penalty.PenaltySpec("wgan-gp", 10.0), params, x_real, x_fake, mix)
    assert value == pytest.approx(0.0, abs=1e-30)
    assert all(np.all(np.abs(g) < 1e-14) for g in grads.values())


def test_roth_weights_stay_finite_for_huge_logits():
    # p = sigmoid(+-800) is exactly 0 or 1 in float64; the weights and their derivatives must stay finite
    spec = gan.GANSpec(mlp.MLPSpec(2, (), 2), mlp.MLPSpec(2, (), 1), "minimax")
    params = {**gan.init_params(spec, 0), "D.0.weight": np.array([[400.0], [0.0]]), "D.0.bias": np.zeros(1)}
    x = np.array([[2.0, 0.0], [-2.0, 0.0]])  # logits +800 and -800
    value, grads = penalty.penalty_and_grads(spec, penalty.PenaltySpec("roth", 1.0), params, x, x)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads.values())


def test_wgan_gp_at_a_zero_input_gradient_uses_zero():
    spec = gan.GANSpec(mlp.MLPSpec(2, (), 2), mlp.MLPSpec(2, (), 1), "wasserstein")
    params = {**gan.init_params(spec, 0), "D.0.weight": np.zeros((2, 1))}
    x = np.ones((2, 2))
    pen = penalty.PenaltySpec("wgan-gp", 1.0)
    value, grads = penalty.penalty_and_grads(spec, pen, params, x, x, np.full((2, 1), 0.5))
    assert value == 1.0  # (0 - 1)^2
    assert all(np.all(g == 0) for g in grads.values())


@pytest.mark.parametrize("bad, message", [
    (dict(kind="l2"), "unknown penalty"), (dict(weight=-1.0), ">= 0"), (dict(weight=float("nan")), ">= 0"),
    (dict(weight=True), ">= 0"), (dict(weight="1"), ">= 0")])
def test_bad_penalty_specs_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        penalty.PenaltySpec(**bad)


def test_bad_penalty_inputs_are_refused():
    spec = gan.GANSpec(mlp.MLPSpec(2, (), 2), mlp.MLPSpec(2, (), 1), "wasserstein")
    params = gan.init_params(spec, 0)
    with pytest.raises(ValueError, match="needs the interpolation weights"):
        penalty.penalty_and_grads(spec, penalty.PenaltySpec("wgan-gp"), params, np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="same shape"):
        penalty.penalty_and_grads(spec, penalty.PenaltySpec("wgan-gp"), params, np.ones((2, 2)), np.ones((3, 2)),
                                  np.ones((2, 1)))
    with pytest.raises(ValueError, match="one output"):
        penalty.input_gradient(mlp.MLPSpec(2, (), 2), gan.init_params(spec, 0) | {
            "D.0.weight": np.ones((2, 2)), "D.0.bias": np.ones(2)}, "D", np.ones((1, 2)))
