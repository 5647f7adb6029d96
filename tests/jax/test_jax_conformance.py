"""The JAX backend against the NumPy reference: forward passes, losses, gradients and training rounds.

float64 is held to ~1e-10 (only summation order may differ); float32 is compared with the reference run
in float32, and with float64 at float32's own precision.
"""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.interface import ReferenceBackend
from backends.jax import JaxBackend
from reference import losses
from reference.activations import ACTIVATIONS
from tests.helpers import strategies as gs
from tests.jax.common import (
    ADAM,
    RMSPROP,
    RMSPROP_MOMENTUM,
    SGD,
    SGD_MOMENTUM,
    assert_close,
    assert_dicts_close,
    assert_metrics_close,
    inputs,
    make_config,
    pair,
)

# Each example of these compiles new programs (~1 s): 5-6 examples in the dev and ci profiles, 50 in thorough.
FEW = settings(max_examples=max(5, settings.default.max_examples // 10),
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@functools.cache
def forward_pair(activation, g_output, dtype):
    config = make_config(activation=activation, g_output=g_output, hidden=(9, 4), slope=0.1)
    return pair(config, seed=11, dtype=dtype)


@functools.cache
def loss_backend(kind, dtype):
    return JaxBackend(make_config(loss=kind), dtype=dtype)


# ----- forward passes -----

@pytest.mark.parametrize("activation", ACTIVATIONS)
@given(seed=gs.seeds, batch=st.integers(1, 5))
@settings(max_examples=max(5, settings.default.max_examples // 10))
def test_forward_matches_reference_float64(activation, seed, batch):
    g_output = {"tanh": "tanh", "sigmoid": "sigmoid"}.get(activation, "identity")
    ref, jx = forward_pair(activation, g_output, "float64")
    rng = np.random.default_rng(seed)
    z, x = rng.standard_normal((batch, 3)), 3 * rng.standard_normal((batch, 2))
    out = jx.generate(z)
    assert out.dtype == np.float64
    assert_close(out, ref.generate(z), 1e-12, what="G(z)")
    assert_close(jx.discriminate(x), ref.discriminate(x), 1e-12, what="D(x)")


def test_forward_float32_is_float32_and_close():
    ref, jx = forward_pair("leaky_relu", "tanh", "float32")
    rng = np.random.default_rng(0)
    z, x = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    out = jx.generate(z)
    assert out.dtype == np.float32
    ref32 = ReferenceBackend(ref.config, dtype="float32")
    ref32.load_state(ref.export_params(), *ref.export_optimizer_state(), step=0)
    assert_close(out, ref.generate(z), 2e-6, what="G(z) float32 vs float64")
    assert_close(jx.discriminate(x), ref.discriminate(x), 2e-6, what="D(x) float32 vs float64")
    err32 = np.abs(ref32.generate(z) - ref.generate(z)).max()
    assert np.abs(out - ref.generate(z)).max() <= 8 * err32 + 1e-7  # float32's own error, not more


# ----- losses on logits, with gradients -----

@pytest.mark.parametrize("kind", losses.LOSSES)
@given(real=gs.logits(min_batch=5, max_batch=5), fake=gs.logits(min_batch=5, max_batch=5))  # one compile
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_losses_match_reference(kind, real, fake):
    jx = loss_backend(kind, "float64")
    loss, g_real, g_fake = jx.d_loss(real, fake)
    e_loss, e_real, e_fake = losses.d_loss(kind, real, fake)
    assert np.isfinite(loss) and np.all(np.isfinite(g_real)) and np.all(np.isfinite(g_fake))
    terms = float(max(np.abs(real).max(), np.abs(fake).max()))  # the loss is a difference of means of these
    assert_close(loss, e_loss, 1e-12, what="D loss", scale=terms)
    # Gradients with respect to logits are at most 1/B in size. The reference's sigmoid, (1 + tanh(l/2)) / 2,
    # is accurate to ~1e-16 absolute only (sigmoid(-40) comes out 0), so compare at the 1/B scale.
    assert_close(g_real, e_real, 1e-12, what="dL/d real", scale=1 / len(real))
    assert_close(g_fake, e_fake, 1e-12, what="dL/d fake", scale=1 / len(fake))
    loss, grad = jx.g_loss(fake)
    e_loss, e_grad = losses.g_loss(kind, fake)
    assert_close(loss, e_loss, 1e-12, what="G loss", scale=terms)
    assert_close(grad, e_grad, 1e-12, what="dL_G/d fake", scale=1 / len(fake))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_losses_finite_and_exact_at_huge_logits(dtype):
    big = np.array([[1e4], [-1e4], [0.0], [80.0]])
    for kind in losses.LOSSES:
        jx = loss_backend(kind, dtype)
        loss, g_real, g_fake = jx.d_loss(big, -big[:3])  # batches of different sizes: two separate means
        e_loss, e_real, e_fake = losses.d_loss(kind, big, -big[:3])
        assert np.isfinite(loss)
        assert_close(loss, e_loss, 1e-6, what=f"{kind} D loss")
        assert_close(g_real, e_real, 1e-6, what=f"{kind} dL/d real")
        assert_close(g_fake, e_fake, 1e-6, what=f"{kind} dL/d fake")
        loss, grad = jx.g_loss(big)
        assert np.isfinite(loss)
        assert_close(grad, losses.g_loss(kind, big)[1], 1e-6, what=f"{kind} dL_G/d fake")
    # the known values: softplus(1e4) = 1e4; the non-saturating G gradient at l = -1e4 is -1/B
    loss, grad = loss_backend("nonsaturating", dtype).g_loss(np.array([[-1e4]]))
    assert loss == pytest.approx(1e4) and grad[0, 0] == pytest.approx(-1.0)


# ----- gradients of the D step and the G step -----

@given(config=gs.train_configs(max_width=6, max_batch=6), seed=gs.seeds)
@FEW
def test_d_and_g_grads_match_reference(config, seed):
    ref, jx = pair(config, seed=seed % 1000)
    rng = np.random.default_rng(seed)
    x, z = rng.standard_normal((config.batch_size, config.spec.data_size)), rng.standard_normal(
        (config.batch_size, config.spec.z_size))
    loss, grads = jx.d_grads(x, z)
    e_loss, e_grads = ref.d_grads(x, z)
    assert_close(loss, e_loss, 1e-10, what="D loss")
    assert_dicts_close(grads, e_grads, 1e-9, 1e-11, what="D grads")
    loss, grads = jx.g_grads(z)
    e_loss, e_grads = ref.g_grads(z)
    assert_close(loss, e_loss, 1e-10, what="G loss")
    assert_dicts_close(grads, e_grads, 1e-9, 1e-11, what="G grads")
    assert list(grads) == [k for k in config.spec.param_shapes() if k.startswith("G.")]


# ----- whole training rounds -----

CASES = {
    "minimax-adam": dict(loss="minimax"),
    "nonsat-adam-k2m2": dict(d_steps=2, g_steps=2),
    "nonsat-sgd": dict(d_opt=SGD, g_opt=SGD),
    "nonsat-sgd-momentum-leaky": dict(d_opt=SGD_MOMENTUM, g_opt=SGD_MOMENTUM, activation="leaky_relu"),
    "minimax-rmsprop-tanh": dict(loss="minimax", d_opt=RMSPROP, g_opt=RMSPROP, activation="tanh",
                                 g_output="tanh"),
    "wgan-rmsprop-clip-k3": dict(loss="wasserstein", d_opt=RMSPROP, g_opt=RMSPROP, d_steps=3, clip=0.05),
    "wgan-rmsprop-momentum": dict(loss="wasserstein", d_opt=RMSPROP_MOMENTUM, g_opt=RMSPROP_MOMENTUM),
    "mixed-optimizers-sigmoid": dict(d_opt=ADAM, g_opt=SGD_MOMENTUM, activation="sigmoid", d_steps=2),
}


def run_both(config, ref, jx, rounds, seed=5):
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        step = inputs(config, rng)
        e, a = ref.train_step(step), jx.train_step(step)
    return e, a


@pytest.mark.parametrize("case", CASES)
def test_training_rounds_match_reference_float64(case):
    config = make_config(**CASES[case])
    ref, jx = pair(config, seed=3)
    e, a = run_both(config, ref, jx, rounds=4)
    assert jx.step == ref.step == 4
    assert_metrics_close(a, e, 1e-10)
    assert_dicts_close(jx.export_params(), ref.export_params(), 1e-10, what="params")
    for a_state, e_state in zip(jx.export_optimizer_state(), ref.export_optimizer_state(), strict=True):
        assert_dicts_close(a_state, e_state, 1e-9, 1e-10, what="optimizer state")
        assert a_state["step"] == e_state["step"]


@pytest.mark.parametrize("case", ["nonsat-adam-k2m2", "wgan-rmsprop-clip-k3", "nonsat-sgd-momentum-leaky"])
def test_training_rounds_float32(case):
    """float32 JAX stays within a small multiple of the float32 reference's own distance from float64."""
    config = make_config(**CASES[case])
    ref64, jx = pair(config, seed=3, dtype="float32")
    ref32 = ReferenceBackend(config, dtype="float32")
    ref32.init(3)
    rng = np.random.default_rng(5)
    for _ in range(3):
        step = inputs(config, rng)
        ref64.train_step(step), ref32.train_step(step), jx.train_step(step)
    p64, p32, pj = ref64.export_params(), ref32.export_params(), jx.export_params()
    for name in p64:
        own = np.abs(p32[name] - p64[name]).max()
        err = np.abs(pj[name] - p64[name]).max()
        assert err <= 8 * own + 1e-6, f"{name}: float32 JAX error {err:.3g}, float32 reference's {own:.3g}"


@given(config=st.sampled_from(["minimax", "nonsaturating"]).flatmap(
    lambda loss: gs.train_configs(loss=loss, max_width=6, max_d_steps=2, max_g_steps=2, max_batch=5)),
       seed=gs.seeds)
@FEW
def test_generated_configs_train_like_reference(config, seed):
    """Any architecture and optimizer hyperparameters. (WGAN is in CASES: its critic's output-bias gradient
    is 1 - 1 = 0 up to rounding, and Adam with a tiny eps turns that rounding into a +-lr step.)"""
    ref, jx = pair(config, seed=seed % 1000)
    e, a = run_both(config, ref, jx, rounds=2, seed=seed)
    assert_dicts_close(jx.export_params(), ref.export_params(), 1e-8, 1e-10, what="params")
    assert_metrics_close(a, e, 1e-8)
