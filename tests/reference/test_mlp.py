"""reference.mlp: backward against central differences, initialisation, parameter layout, spec round trips."""

import json

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from reference import gan, mlp
from tests.helpers.finite_diff import (
    assert_gradients_close,
    noise_floor,
    numerical_gradient,
    numerical_gradients,
)
from tests.helpers.strategies import KINKED_ACTIVATIONS, gan_specs, mlp_specs, seeds

# Fourth-order central differences, step 1e-4: error ~1e-12 |L|, so even gradient entries 1e-6 of the loss's size
# are checked to 1e-6. Perturbations reach 2e-4 * max(1, |p|): KINK_MARGIN keeps ReLU inputs clear of 0 downstream.
EPS, ORDER = 1e-4, 4
KINK_MARGIN = 1e-3


def min_abs_preactivation(spec: mlp.MLPSpec, cache) -> float:
    """The smallest |h| feeding a ReLU / LeakyReLU anywhere in the network (inf when there is none)."""
    kinked = [abs(h).min() for i, (_, h) in enumerate(cache) if spec.activation(i).name in KINKED_ACTIVATIONS]
    return float(min(kinked, default=np.inf))


def projection_loss(spec, prefix, weights):
    """L(params, x) = sum(R * MLP(x)) for a fixed R, so dL/dy = R exactly."""
    def loss(params, x):
        y, _ = mlp.forward(spec, params, prefix, x)
        return float(np.sum(weights * y))
    return loss


@given(spec=mlp_specs(max_depth=3, max_width=16), batch=st.integers(1, 4), seed=seeds)
def test_backward_matches_central_differences(spec, batch, seed):
    rng = np.random.default_rng(seed)
    params = mlp.init_params(spec, "P", rng)
    x = rng.standard_normal((batch, spec.in_size))
    grad_y = rng.standard_normal((batch, spec.out_size))
    y, cache = mlp.forward(spec, params, "P", x)
    assume(min_abs_preactivation(spec, cache) > KINK_MARGIN)
    loss = projection_loss(spec, "P", grad_y)

    grad_x, grads = mlp.backward(spec, params, "P", cache, grad_y)

    assert grad_x.shape == x.shape
    assert list(grads) == list(mlp.param_shapes(spec, "P"))
    atol = noise_floor(loss(params, x))
    assert_gradients_close(grad_x, numerical_gradient(lambda x_: loss(params, x_), x, EPS, ORDER), atol=atol,
                           name="dL/dx")
    assert_gradients_close(grads, numerical_gradients(lambda p: loss(p, x), params, eps=EPS, order=ORDER), atol=atol,
                           name="dL/dparams")


@pytest.mark.parametrize("activation", ["identity", "relu", "leaky_relu", "tanh", "sigmoid"])
def test_single_dense_layer_by_hand(activation):
    """One layer, every number written out: h = x W + b, then the backward formulas of mlp.py's docstring."""
    spec = mlp.MLPSpec(2, (), 3, output_activation=activation, leaky_slope=0.1)
    params = {"L.0.weight": np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]]), "L.0.bias": np.array([0.5, 1.0, -0.25])}
    x = np.array([[1.0, 2.0], [-1.0, 0.5]])
    h = np.array([[1 + 6 + 0.5, -2 + 0.5 + 1, 0.5 - 2 - 0.25],
                  [-1 + 1.5 + 0.5, 2 + 0.125 + 1, -0.5 - 0.5 - 0.25]])
    y, cache = mlp.forward(spec, params, "L", x)
    act = spec.activation(0)
    np.testing.assert_allclose(cache[0][1], h, rtol=1e-15)
    np.testing.assert_allclose(y, act.forward(h), rtol=1e-15)
    grad_y = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    grad_h = grad_y * act.derivative(h)
    grad_x, grads = mlp.backward(spec, params, "L", cache, grad_y)
    np.testing.assert_allclose(grads["L.0.weight"], x.T @ grad_h, rtol=1e-15)
    np.testing.assert_allclose(grads["L.0.bias"], grad_h.sum(axis=0), rtol=1e-15)
    np.testing.assert_allclose(grad_x, grad_h @ params["L.0.weight"].T, rtol=1e-15)
    assert_gradients_close(grads, numerical_gradients(lambda p: float(np.sum(grad_y * mlp.forward(spec, p, "L", x)[0])),
                                                      params), rtol=1e-8)


def test_relu_network_values_by_hand():
    spec = mlp.MLPSpec(1, (2,), 1, "relu", "identity")
    params = {"N.0.weight": np.array([[1.0, -1.0]]), "N.0.bias": np.array([0.0, 1.0]),
              "N.1.weight": np.array([[2.0], [3.0]]), "N.1.bias": np.array([-1.0])}
    x = np.array([[2.0], [-0.5]])
    # x = 2:    h0 = (2, -1) -> relu (2, 0) -> 2*2 + 0 - 1 = 3
    # x = -0.5: h0 = (-0.5, 1.5) -> (0, 1.5) -> 0 + 4.5 - 1 = 3.5
    y, _ = mlp.forward(spec, params, "N", x)
    np.testing.assert_array_equal(y, [[3.0], [3.5]])


@given(spec=mlp_specs(max_depth=3, max_width=16), seed=seeds)
def test_init_is_a_function_of_the_rng_state(spec, seed):
    a = mlp.init_params(spec, "G", np.random.default_rng(seed))
    b = mlp.init_params(spec, "G", np.random.default_rng(seed))
    c = mlp.init_params(spec, "G", np.random.default_rng(seed + 1))
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == np.float64
        np.testing.assert_array_equal(a[name], b[name])
    assert any(not np.array_equal(a[name], c[name]) for name in a)


@given(spec=mlp_specs(max_depth=3, max_width=16), seed=seeds)
def test_init_draws_in_interchange_order_within_the_documented_bound(spec, seed):
    params = mlp.init_params(spec, "D", np.random.default_rng(seed))
    rng = np.random.default_rng(seed)  # replay the documented draws: layer by layer, weight then bias
    for i, (n_in, n_out) in enumerate(zip(spec.sizes[:-1], spec.sizes[1:], strict=True)):
        bound = 1.0 / np.sqrt(n_in)
        for name, shape in ((f"D.{i}.weight", (n_in, n_out)), (f"D.{i}.bias", (n_out,))):
            np.testing.assert_array_equal(params[name], rng.uniform(-bound, bound, size=shape))
            assert np.all(np.abs(params[name]) <= bound)


def test_init_fills_the_uniform_bound():
    """A wide layer's weights look like Uniform(-1/sqrt(n_in), 1/sqrt(n_in)): range, mean and variance."""
    spec = mlp.MLPSpec(400, (), 300)
    w = mlp.init_params(spec, "G", np.random.default_rng(0))["G.0.weight"]
    bound = 1.0 / 20.0
    assert w.max() <= bound and w.min() >= -bound
    assert w.max() > 0.999 * bound and w.min() < -0.999 * bound
    assert abs(w.mean()) < 0.01 * bound
    assert abs(w.var() / (bound**2 / 3) - 1) < 0.01  # Var U(-a, a) = a^2 / 3; 120000 draws: sd of the ratio ~0.004


@given(spec=mlp_specs(max_depth=3, max_width=16), prefix=st.sampled_from(["G", "D", "critic"]))
def test_param_shapes_names_and_order(spec, prefix):
    shapes = mlp.param_shapes(spec, prefix)
    expected = []
    for i in range(spec.num_layers):
        expected += [(f"{prefix}.{i}.weight", (spec.sizes[i], spec.sizes[i + 1])),
                     (f"{prefix}.{i}.bias", (spec.sizes[i + 1],))]
    assert list(shapes.items()) == expected
    params = mlp.init_params(spec, prefix, np.random.default_rng(0))
    assert {k: v.shape for k, v in params.items()} == shapes
    assert list(params) == list(shapes)


@given(spec=mlp_specs(max_depth=3, max_width=16))
def test_spec_dict_round_trip_through_json(spec):
    d = json.loads(json.dumps(spec.to_dict()))
    assert mlp.MLPSpec.from_dict(d) == spec
    assert mlp.MLPSpec.from_dict(spec.to_dict()) == spec


def test_spec_sizes_and_activations():
    spec = mlp.MLPSpec(3, [5, 7], 2, "tanh", "sigmoid")
    assert spec.hidden_sizes == (5, 7)  # a list is stored as a tuple: the spec stays hashable
    assert spec.sizes == [3, 5, 7, 2] and spec.num_layers == 3
    assert [spec.activation(i).name for i in range(3)] == ["tanh", "tanh", "sigmoid"]
    assert hash(spec) == hash(mlp.MLPSpec(3, (5, 7), 2, "tanh", "sigmoid"))


@given(spec=gan_specs(max_width=8), seed=st.integers(0, 2**31))
def test_gan_init_params_uses_the_documented_streams(spec, seed):
    params = gan.init_params(spec, seed)
    assert list(params) == list(spec.param_shapes())
    g = mlp.init_params(spec.generator, "G", np.random.default_rng([seed, 0]))
    d = mlp.init_params(spec.discriminator, "D", np.random.default_rng([seed, 1]))
    for name, value in {**g, **d}.items():
        np.testing.assert_array_equal(params[name], value)
    gan.check_params(spec, params)
