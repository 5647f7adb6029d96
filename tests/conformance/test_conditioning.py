"""The suite's well-posedness filters (conformance/cases.py): they must reject exactly the cases whose answer
is not defined at a dtype, so they are tested against values worked out by hand."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import cases as C
from reference import gan, mlp, optim
from reference.gan import GANSpec
from reference.train import TrainConfig


def _linear_wgan(depth: int = 2, width: int = 4) -> GANSpec:
    g = mlp.MLPSpec(3, (width,), 2, "relu")
    d = mlp.MLPSpec(2, (width,) * depth, 1, "identity")
    return GANSpec(g, d, "wasserstein")


def test_bounds_of_a_one_layer_critic_are_the_sums_of_the_term_magnitudes():
    # D(x) = x @ W + b; Wasserstein D loss = mean D(fake) - mean D(real).
    # dL/db = sum_i (-1/B) + sum_i (+1/B) = 0 exactly, made of 2B terms of size 1/B: bound 2.
    # dL/dW[j] = -mean x_real[:, j] + mean x_fake[:, j]; bound = mean |x_real[:, j]| + mean |x_fake[:, j]|.
    spec = GANSpec(mlp.MLPSpec(3, (5,), 2), mlp.MLPSpec(2, (), 1), "wasserstein")
    params = gan.init_params(spec, 0)
    rng = np.random.default_rng(1)
    z, x_real = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    grads, _ = gan.d_loss_and_grads(spec, params, x_real, z)
    bounds = C.gradient_bounds(spec, params, "d", z, x_real)
    x_fake = gan.generate(spec, params, z)
    assert grads["D.0.bias"][0] == 0.0
    np.testing.assert_allclose(bounds["D.0.bias"], [2.0], rtol=1e-15)
    expected = np.abs(x_real).mean(0) + np.abs(x_fake).mean(0)
    np.testing.assert_allclose(bounds["D.0.weight"][:, 0], expected, rtol=1e-14)


def test_bounds_of_a_g_step_through_a_linear_critic():
    # G(z) = z @ V + c (one linear layer), D(x) = x @ W + b, G loss = -mean D(G(z)).
    # dL/dc[k] = -W[k]: B terms -W[k]/B, bound |W[k]|; dL/dV[j, k] = -mean z[:, j] W[k], bound mean|z_j| |W[k]|.
    spec = GANSpec(mlp.MLPSpec(3, (), 2), mlp.MLPSpec(2, (), 1), "wasserstein")
    params = gan.init_params(spec, 4)
    z = np.random.default_rng(2).standard_normal((7, 3))
    bounds = C.gradient_bounds(spec, params, "g", z)
    w = np.abs(params["D.0.weight"][:, 0])
    np.testing.assert_allclose(bounds["G.0.bias"], w, rtol=1e-15)
    np.testing.assert_allclose(bounds["G.0.weight"], np.outer(np.abs(z).mean(0), w), rtol=1e-14)


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_bounds_dominate_the_gradients(data):
    # |sum of terms| <= sum of |terms|, for every entry of every gradient of either step
    spec = data.draw(C.gan_specs(C.SMALL))
    params = gan.init_params(spec, data.draw(st.integers(0, 100)))
    rng = np.random.default_rng(data.draw(st.integers(0, 100)))
    b = data.draw(st.integers(1, 9))
    z, x_real = rng.standard_normal((b, spec.z_size)), rng.standard_normal((b, spec.data_size))
    for step, (grads, _) in [("d", gan.d_loss_and_grads(spec, params, x_real, z)),
                             ("g", gan.g_loss_and_grads(spec, params, z))]:
        bounds = C.gradient_bounds(spec, params, step, z, x_real if step == "d" else None)
        assert bounds.keys() == grads.keys()
        for name in grads:
            assert np.all(np.abs(grads[name]) <= bounds[name] * (1 + 1e-12) + 1e-300), (step, name)


def test_a_dead_relu_unit_has_a_zero_bound():
    # a hidden ReLU unit whose pre-activation is negative for every input gets exactly 0 in any precision
    spec = GANSpec(mlp.MLPSpec(2, (), 2), mlp.MLPSpec(2, (3,), 1, "relu"), "minimax")
    params = gan.init_params(spec, 0)
    params["D.0.bias"] = np.array([-1e3, 0.1, 0.2])  # unit 0 is dead
    rng = np.random.default_rng(0)
    z, x_real = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    bounds = C.gradient_bounds(spec, params, "d", z, x_real)
    assert bounds["D.0.bias"][0] == 0.0 and np.all(bounds["D.0.weight"][:, 0] == 0.0)
    assert np.all(bounds["D.0.bias"][1:] > 0)


def test_noise_margin_is_eps_over_the_bound_for_a_structural_zero():
    # fresh RMSprop: v = 0, so the denominator of an entry whose gradient is 0 is eps alone
    opt = optim.OptimizerSpec("rmsprop", lr=0.01, alpha=0.875, eps=1e-5, momentum=0.5)
    spec = _linear_wgan()
    params = gan.init_params(spec, 0)
    state = optim.init_state(opt, gan.network(params, "D"))
    rng = np.random.default_rng(3)
    z, x_real = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    grads, _ = gan.d_loss_and_grads(spec, params, x_real, z)
    bounds = C.gradient_bounds(spec, params, "d", z, x_real)
    assert np.all(grads["D.0.bias"] == 0.0)  # every bias of a linear critic is a structural zero
    margin = C.noise_margin(opt, state, grads, bounds)
    biases = max(float(np.max(bounds[f"D.{i}.bias"])) for i in range(3))
    assert margin <= 1e-5 / biases * (1 + 1e-12)
    assert C.noise_margin(optim.OptimizerSpec("sgd", lr=0.1), {}, grads, bounds) == np.inf


def test_the_thorough_false_alarm_is_rejected_in_float32_and_kept_in_float64():
    # the case `python -m conformance --backend cupy --check step --dtype float32 --seed 7 --profile thorough`
    # used to fail on: a linear WGAN critic under RMSprop (eps 1e-5, momentum 0.5), batch 8, fresh state
    spec = GANSpec(mlp.MLPSpec(8, (), 8, "relu"), mlp.MLPSpec(8, (8, 8), 1, "identity"), "wasserstein")
    d_opt = optim.OptimizerSpec("rmsprop", lr=0.01, beta1=0.0, beta2=0.9375, alpha=0.875, eps=1e-5, momentum=0.5)
    g_opt = optim.OptimizerSpec("adam", lr=0.01, beta1=0.0, beta2=0.9375, alpha=0.875, eps=1e-4)
    cfg = TrainConfig(spec, d_opt, g_opt, d_steps=1, g_steps=1, batch_size=8, clip_value=None)
    case = C.Case(cfg, seed=0, input_seed=0, batch=8)
    inputs = [case.step_inputs()]
    params, d_state, _, _ = case.initial_state()
    grads, _ = gan.d_loss_and_grads(spec, params, inputs[0].real[0], inputs[0].z_d[0])
    bounds = C.gradient_bounds(spec, params, "d", inputs[0].z_d[0], inputs[0].real[0])
    # the worst entry is the output bias: 2B terms of size 1/B (bound 2), denominator eps = 1e-5
    assert bounds["D.2.bias"][0] == 2.0 and grads["D.2.bias"][0] == 0.0
    assert C.noise_margin(d_opt, d_state, grads, bounds) == 1e-5 / 2.0
    # float32 leaves ~1e-8 there, 1e-3 of a unit step after dividing by eps: not well-posed
    assert not C.rounds_ok(case, "float32", inputs)
    # float64 leaves ~1e-16, 1e-11 of a unit step: well inside the tolerance, the case is kept
    assert C.rounds_ok(case, "float64", inputs)
