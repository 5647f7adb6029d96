"""The test helpers test themselves: finite differences against known derivatives, strategies build valid objects."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import gan, mlp, optim, train
from tests.helpers import strategies
from tests.helpers.finite_diff import (
    assert_gradients_close,
    numerical_derivative,
    numerical_gradient,
    numerical_gradients,
    relative_error,
)


def test_numerical_gradient_of_known_functions():
    x = np.array([[0.3, -1.2], [5.0, 0.0]])

    def f(v):
        return float(np.sum(np.sin(v) * np.exp(v / 3)))

    exact = np.cos(x) * np.exp(x / 3) + np.sin(x) * np.exp(x / 3) / 3
    assert relative_error(numerical_gradient(f, x), exact) < 1e-8
    assert relative_error(numerical_gradient(f, x, eps=1e-4, order=4), exact) < 1e-11  # order 2: ~1e-9
    np.testing.assert_allclose(numerical_derivative(np.tanh, x), 1 - np.tanh(x) ** 2, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="order"):
        numerical_gradient(f, x, order=3)


def test_numerical_gradients_leaves_params_alone_and_names_unknown_keys():
    params = {"a": np.array([1.0, 2.0]), "b": np.array(3.0)}
    grads = numerical_gradients(lambda p: float(p["a"] @ p["a"] * p["b"]), params)
    np.testing.assert_allclose(grads["a"], [6.0, 12.0], rtol=1e-9)
    np.testing.assert_allclose(grads["b"], 5.0, rtol=1e-9)
    np.testing.assert_array_equal(params["a"], [1.0, 2.0])
    assert list(numerical_gradients(lambda p: float(p["b"]), params, names=["b"])) == ["b"]
    with pytest.raises(KeyError, match="'c'"):
        numerical_gradients(lambda p: 0.0, params, names=["c"])


def test_assert_gradients_close_fails_on_a_wrong_gradient_and_names_it():
    good = {"w": np.array([1.0, 2.0]), "b": np.array([1e-3])}
    assert_gradients_close(good, {"w": good["w"] * (1 + 1e-8), "b": good["b"]})
    with pytest.raises(AssertionError, match=r"grad\['b'\]: relative error 1\.0\d*e-05"):
        assert_gradients_close(good, {"w": good["w"], "b": good["b"] * (1 + 1e-5)}, name="grad")
    with pytest.raises(AssertionError, match="keys differ"):
        assert_gradients_close(good, {"w": good["w"]})
    with pytest.raises(AssertionError, match="shape"):
        assert_gradients_close(np.zeros(2), np.zeros(3))
    with pytest.raises(AssertionError, match="NaN"):
        assert_gradients_close(np.array([math.nan]), np.array([0.0]))
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0


@given(spec=strategies.gan_specs(), config=strategies.train_configs(), opt=strategies.optimizer_specs())
def test_strategies_build_valid_objects(spec, config, opt):
    gan.check_params(spec, gan.init_params(spec, 0))
    assert spec.discriminator.out_size == 1 and spec.discriminator.output_activation == "identity"
    assert (config.clip_value is None) or config.spec.loss == "wasserstein"
    assert isinstance(opt, optim.OptimizerSpec) and 1e-5 <= opt.lr <= 1e-1


@given(data=strategies.mlp_specs(in_size=3, out_size=2, min_depth=1, max_depth=1, max_width=4))
def test_mlp_specs_respects_its_arguments(data):
    assert isinstance(data, mlp.MLPSpec)
    assert data.in_size == 3 and data.out_size == 2 and len(data.hidden_sizes) == 1 and data.hidden_sizes[0] <= 4


@given(config=strategies.train_configs(max_d_steps=2), data=st.data())
def test_step_inputs_fit_their_config(config, data):
    inputs = data.draw(strategies.step_inputs(config))
    inputs.check(config)
    assert inputs.real.shape == (config.d_steps, config.batch_size, config.spec.data_size)
    assert inputs.z_g.shape == (config.g_steps, config.batch_size, config.spec.z_size)
    train.train_step(config, train.TrainState.initial(config, 0), inputs)
