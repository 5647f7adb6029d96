"""The JAX backend's own machinery: train_rounds, compile counts, state round trips, freezing, clipping,
scoped x64, bfloat16, and clear errors for bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backends
from backends.interface import ReferenceBackend
from backends.jax import JaxBackend
from backends.jax.backend import MIN_CAPACITY, resolve_devices
from reference import optim
from reference.train import StepInputs
from tests.jax.common import (
    ADAM,
    RMSPROP_MOMENTUM,
    SGD,
    SGD_MOMENTUM,
    assert_close,
    assert_dicts_close,
    assert_metrics_close,
    chunk,
    inputs,
    make_config,
    pair,
)


def test_registered_under_its_name():
    assert backends.load_backend("jax") is JaxBackend
    assert JaxBackend.name == "jax"


# ----- train_rounds: the fast path equals the round-by-round path -----

@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_train_rounds_equals_train_step_loop(dtype, rtol):
    config = make_config(d_opt=ADAM, g_opt=RMSPROP_MOMENTUM, d_steps=2, g_steps=2, batch=4)
    data = np.random.default_rng(0).standard_normal((40, 2))
    _, fast = pair(config, seed=1, dtype=dtype)
    _, slow = pair(config, seed=1, dtype=dtype)
    fast.set_data(data)
    rng = np.random.default_rng(2)
    chunks = [chunk(config, rng, n, len(data)) for n in (5, 3)]
    fast_metrics = [m for c in chunks for m in fast.train_rounds(*c)]
    slow_metrics = [slow.train_step(StepInputs(data[index], z_d, z_g))
                    for index_, z_d_, z_g_ in chunks
                    for index, z_d, z_g in zip(index_, z_d_, z_g_, strict=True)]
    assert [m.step for m in fast_metrics] == list(range(1, 9)) and fast.step == slow.step == 8
    for a, e in zip(fast_metrics, slow_metrics, strict=True):
        assert_metrics_close(a, e, rtol)
    assert_dicts_close(fast.export_params(), slow.export_params(), rtol, what="params")
    for a, e in zip(fast.export_optimizer_state(), slow.export_optimizer_state(), strict=True):
        assert_dicts_close(a, e, rtol, what="optimizer state")


def test_train_rounds_matches_reference_and_reports_wgan_metrics():
    config = make_config(loss="wasserstein", d_opt=SGD, g_opt=SGD, d_steps=3, clip=0.02)
    ref, jx = pair(config, seed=4)
    data = np.random.default_rng(0).standard_normal((30, 2))
    jx.set_data(data)
    index, z_d, z_g = chunk(config, np.random.default_rng(1), 6, len(data))
    got = jx.train_rounds(index, z_d, z_g)
    ref.set_data(data)
    expected = ref.train_rounds(index, z_d, z_g)  # the interface's default: train_step round by round
    for a, e in zip(got, expected, strict=True):
        assert_metrics_close(a, e, 1e-10)
        assert np.isnan(a.d_acc_real) and np.isnan(a.d_acc_fake) and np.isfinite(a.critic_gap)
    assert_dicts_close(jx.export_params(), ref.export_params(), 1e-10, what="params")


def test_compile_count_stays_constant():
    """One trace of the round program however many train_step calls; train_rounds traces once per
    power-of-two capacity (at least MIN_CAPACITY), never per chunk."""
    config = make_config(batch=4)
    _, jx = pair(config)
    data = np.random.default_rng(0).standard_normal((20, 2))
    jx.set_data(data)
    rng = np.random.default_rng(1)
    for _ in range(6):
        jx.train_step(inputs(config, rng))
    assert jx.traces["train_step"] == 1
    for n in (8, 8, 8):  # a run with a fixed chunk size compiles one program
        jx.train_rounds(*chunk(config, rng, n, len(data)))
    assert jx.traces["train_rounds"] == 1
    for n in (5, 1, 32, 3, 2, 7):  # every chunk of up to MIN_CAPACITY rounds runs in that same program
        jx.train_rounds(*chunk(config, rng, n, len(data)))
    assert jx.traces["train_rounds"] == 1 and MIN_CAPACITY == 32
    for n in (40, 33, 64, 100, 65, 128, 9):  # capacities 64, 64, 64, 128, 128, 128, 32
        jx.train_rounds(*chunk(config, rng, n, len(data)))
    assert jx.traces["train_rounds"] == 3  # capacities 32, 64, 128
    assert jx._rounds_jit._cache_size() == 3  # JAX's own count of compiled programs agrees
    assert jx.traces["train_step"] == 1 and jx.step == 6 + 24 + 50 + 439


def test_no_rounds_is_a_no_op():
    config = make_config()
    _, jx = pair(config)
    jx.set_data(np.zeros((5, 2)))
    before = jx.export_params()
    assert jx.train_rounds(*chunk(config, np.random.default_rng(0), 0, 5)) == []
    assert jx.step == 0 and all(np.array_equal(before[k], v) for k, v in jx.export_params().items())


# ----- state in and out -----

@pytest.mark.parametrize("opt", [ADAM, SGD, SGD_MOMENTUM, RMSPROP_MOMENTUM], ids=lambda o: f"{o.name}-{o.momentum}")
def test_export_import_round_trip_and_resume(opt):
    config = make_config(d_opt=opt, g_opt=opt)
    ref, jx = pair(config, seed=7)
    rng = np.random.default_rng(8)
    for _ in range(3):
        step = inputs(config, rng)
        ref.train_step(step), jx.train_step(step)
    params, (d_state, g_state) = jx.export_params(), jx.export_optimizer_state()
    assert all(v.dtype == np.float64 for v in [*params.values(), *d_state.values(), *g_state.values()])
    assert list(params) == list(config.spec.param_shapes())
    assert list(d_state) == optim.state_names(opt, [k for k in params if k.startswith("D.")])
    assert d_state["step"] == 3.0 and g_state["step"] == 3.0

    resumed = JaxBackend(config)
    resumed.load_state(params, d_state, g_state, step=jx.step)
    assert resumed.step == 3
    pairs = [(resumed.export_params(), params), *zip(resumed.export_optimizer_state(), (d_state, g_state), strict=True)]
    for a, e in pairs:
        assert all(np.array_equal(a[k], e[k]) for k in e)  # float64 in and out: bit for bit
    for _ in range(2):  # the resumed run continues exactly like the reference that never stopped
        step = inputs(config, rng)
        ref.train_step(step), resumed.train_step(step)
    assert_dicts_close(resumed.export_params(), ref.export_params(), 1e-10, what="params after resume")
    for a, e in zip(resumed.export_optimizer_state(), ref.export_optimizer_state(), strict=True):
        assert_dicts_close(a, e, 1e-9, 1e-10, what="state after resume")


def test_adam_step_count_drives_bias_correction_after_import():
    """Loading a state at step 50 must continue with Adam's bias correction at t = 51, not t = 1."""
    config = make_config(d_opt=ADAM, g_opt=ADAM)
    ref, jx = pair(config, seed=2)
    params = ref.export_params()
    rng = np.random.default_rng(3)
    d_state, g_state = ref.export_optimizer_state()
    for state in (d_state, g_state):
        state["step"] = np.array(50.0)
        for k in state:
            if k != "step":
                state[k] = np.abs(rng.standard_normal(state[k].shape)) * (0.1 if k.endswith("sq") else 1.0)
    ref.load_state(params, d_state, g_state, step=50)
    jx.load_state(params, d_state, g_state, step=50)
    step = inputs(config, rng)
    assert_metrics_close(jx.train_step(step), ref.train_step(step), 1e-10)
    assert_dicts_close(jx.export_params(), ref.export_params(), 1e-10, what="params")


# ----- freezing and clipping -----

def test_each_update_changes_only_its_own_network():
    config = make_config(d_opt=SGD_MOMENTUM, g_opt=ADAM)
    _, jx = pair(config, seed=5)
    rng = np.random.default_rng(6)
    x, z = rng.standard_normal((6, 2)), rng.standard_normal((6, 3))
    with jax.enable_x64(True):
        carry = jax.device_get(jx._carry)
        after_d, _ = jax.jit(jx._d_update)(carry, (jnp.asarray(x), jnp.asarray(z)))
        after_g, _ = jax.jit(jx._g_update)(carry, jnp.asarray(z))
    same = lambda a, b: all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))  # noqa: E731
    assert same(after_d.g, carry.g) and same(after_d.g_opt, carry.g_opt) and int(after_d.g_count) == 0
    assert not same(after_d.d, carry.d) and int(after_d.d_count) == 1
    assert same(after_g.d, carry.d) and same(after_g.d_opt, carry.d_opt) and int(after_g.d_count) == 0
    assert not same(after_g.g, carry.g) and int(after_g.g_count) == 1
    # and the D objective has no path into G at all (stop_gradient on G's samples)
    with jax.enable_x64(True):
        into_g = jax.grad(lambda g: jx._nets.d_objective(carry.d, g, x, z)[0])(carry.g)
    assert all(np.all(np.asarray(v) == 0) for v in jax.tree.leaves(into_g))


def test_queries_change_nothing():
    config = make_config()
    _, jx = pair(config)
    before = jx.export_params(), jx.export_optimizer_state()
    rng = np.random.default_rng(0)
    jx.d_grads(rng.standard_normal((4, 2)), rng.standard_normal((4, 3)))
    jx.g_grads(rng.standard_normal((4, 3)))
    jx.generate(rng.standard_normal((4, 3)))
    after = jx.export_params(), jx.export_optimizer_state()
    assert all(np.array_equal(before[0][k], after[0][k]) for k in before[0]) and jx.step == 0
    assert all(np.array_equal(b[k], a[k]) for b, a in zip(before[1], after[1], strict=True) for k in b)


def test_clipping_clamps_every_critic_parameter_and_nothing_else():
    clip = 0.01
    config = make_config(loss="wasserstein", d_opt=optim.OptimizerSpec("sgd", lr=1.0), g_opt=SGD, clip=clip)
    ref, jx = pair(config, seed=9)
    step = inputs(config, np.random.default_rng(1))
    ref.train_step(step), jx.train_step(step)
    params = jx.export_params()
    d_values = np.concatenate([v.ravel() for k, v in params.items() if k.startswith("D.")])
    g_values = np.concatenate([v.ravel() for k, v in params.items() if k.startswith("G.")])
    assert np.all(np.abs(d_values) <= clip)
    assert np.sum(np.abs(d_values) == clip) > len(d_values) // 2  # lr 1 pushes most of them to the bounds
    assert any(k.endswith("bias") and np.any(np.abs(v) == clip) for k, v in params.items() if k.startswith("D."))
    assert np.abs(g_values).max() > 10 * clip  # G is not clipped
    assert_dicts_close(params, ref.export_params(), 1e-10, what="params")


# ----- dtypes: scoped x64, float32, bfloat16 -----

def test_float64_is_scoped_and_does_not_leak():
    assert not jax.config.jax_enable_x64
    config = make_config()
    ref, jx64 = pair(config)
    jx32 = JaxBackend(config, dtype="float32")
    jx32.init(0)
    z = np.random.default_rng(0).standard_normal((5, 3))
    out64, out32 = jx64.generate(z), jx32.generate(z)
    jx64.train_step(inputs(config, np.random.default_rng(1)))
    assert jnp.zeros(1).dtype == jnp.float32 and not jax.config.jax_enable_x64  # nothing leaked
    assert jnp.asarray(1.5).dtype == jnp.float32
    assert out64.dtype == np.float64 and out32.dtype == np.float32
    err64, err32 = np.abs(out64 - ref.generate(z)).max(), np.abs(out32 - ref.generate(z)).max()
    assert err64 < 1e-14 < err32  # float64 really computed in float64, float32 in float32
    leaves = jax.tree.leaves(jx64._carry)
    assert {leaf.dtype for leaf in leaves} == {jnp.dtype("float64"), jnp.dtype("int32")}


def test_bfloat16_is_mixed_precision():
    config = make_config(hidden=(16, 16), batch=8)
    ref, jb = pair(config, seed=3, dtype="bfloat16")
    assert jb.dtype == "bfloat16"
    z = np.random.default_rng(0).standard_normal((64, 3))
    out, expected = jb.generate(z), ref.generate(z)
    assert out.dtype == np.float32
    err = np.abs(out - expected).max() / np.abs(expected).max()
    assert 1e-4 < err < 3e-2  # bfloat16 products (8-bit mantissa): visibly not float32, still close
    assert {leaf.dtype for leaf in jax.tree.leaves(jb._carry)} == {jnp.dtype("float32"), jnp.dtype("int32")}
    data = np.random.default_rng(1).standard_normal((64, 2))
    jb.set_data(data)
    metrics = jb.train_rounds(*chunk(config, np.random.default_rng(2), 5, len(data)))
    assert len(metrics) == 5 and all(np.isfinite(m.d_loss) and np.isfinite(m.g_grad_norm) for m in metrics)
    params = jb.export_params()
    assert all(v.dtype == np.float64 and np.all(np.isfinite(v)) for v in params.values())
    moved = max(np.abs(params[k] - ref.export_params()[k]).max() for k in params)
    assert 0 < moved < 0.2  # five Adam steps of lr 1e-2 moved every network a little, not wildly


# ----- errors -----

def test_bad_construction_is_refused():
    config = make_config()
    with pytest.raises(ValueError, match="dtype 'float16'"):
        JaxBackend(config, dtype="float16")
    with pytest.raises(ValueError, match="no 'tpu' device"):
        JaxBackend(config, device="tpu")
    with pytest.raises(ValueError, match="index must be"):
        JaxBackend(config, device="cpu:7")
    with pytest.raises(TypeError, match="device must be a string"):
        JaxBackend(config, device=0)
    assert resolve_devices("cpu") == jax.devices("cpu")[:1] and resolve_devices("cpu:all") == jax.devices("cpu")


def test_bad_state_is_refused_and_keeps_the_old_one():
    config = make_config(d_opt=ADAM, g_opt=SGD_MOMENTUM)
    ref, jx = pair(config)
    params, (d_state, g_state) = ref.export_params(), ref.export_optimizer_state()
    before = jx.export_params()
    wrong_shape = {**params, "D.0.weight": np.zeros((3, 3))}
    with pytest.raises(ValueError, match=r"D\.0\.weight has shape"):
        jx.load_state(wrong_shape, d_state, g_state, 0)
    with pytest.raises(ValueError, match="missing"):
        jx.load_state({k: v for k, v in params.items() if k != "G.1.bias"}, d_state, g_state, 0)
    with pytest.raises(ValueError, match="D optimizer state does not match"):
        jx.load_state(params, g_state, g_state, 0)
    bad_buffer = {**g_state, "G.0.weight.momentum_buffer": np.zeros(2)}
    with pytest.raises(ValueError, match="momentum_buffer has shape"):
        jx.load_state(params, d_state, bad_buffer, 0)
    with pytest.raises(ValueError, match="step must be"):
        jx.load_state(params, {**d_state, "step": np.array(1.5)}, g_state, 0)
    with pytest.raises(ValueError, match="NaN"):
        jx.load_state({**params, "G.0.bias": np.full_like(params["G.0.bias"], np.nan)}, d_state, g_state, 0)
    with pytest.raises(ValueError, match="step must be"):
        jx.load_state(params, d_state, g_state, -1)
    assert all(np.array_equal(before[k], v) for k, v in jx.export_params().items())  # nothing was lost


def test_bad_calls_are_refused():
    config = make_config(batch=4)
    fresh = JaxBackend(config)
    with pytest.raises(RuntimeError, match="init"):
        fresh.generate(np.zeros((2, 3)))
    _, jx = pair(config)
    with pytest.raises(ValueError, match=r"z must have shape \(batch > 0, 3\)"):
        jx.generate(np.zeros((2, 4)))
    with pytest.raises(RuntimeError, match="set_data"):
        jx.train_rounds(*chunk(config, np.random.default_rng(0), 2, 10))
    with pytest.raises(ValueError, match="data must have shape"):
        jx.set_data(np.zeros((10, 3)))
    jx.set_data(np.zeros((10, 2)))
    index, z_d, z_g = chunk(config, np.random.default_rng(0), 2, 10)
    with pytest.raises(ValueError, match="outside the data"):
        jx.train_rounds(index + 5, z_d, z_g)
    with pytest.raises(ValueError, match="z_g must have shape"):
        jx.train_rounds(index, z_d, z_g[:, :, :3])
    with pytest.raises(TypeError, match="index must be an integer"):
        jx.train_rounds(index.astype(float), z_d, z_g)
    with pytest.raises(ValueError, match="real must have shape"):
        jx.train_step(StepInputs(np.zeros((2, 4, 2)), np.zeros((1, 4, 3)), np.zeros((1, 4, 3))))
    with pytest.raises(ValueError, match=r"real_out must have shape \(batch > 0, 1\)"):
        jx.d_loss(np.zeros((3, 2)), np.zeros((3, 1)))
    assert jx.step == 0


def test_matches_reference_backend_interface_default():
    """ReferenceBackend.d_loss etc. and JaxBackend agree on a mid-training state loaded from the reference."""
    config = make_config(loss="minimax")
    ref = ReferenceBackend(config)
    ref.init(0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        ref.train_step(inputs(config, rng))
    jx = JaxBackend(config)
    jx.load_state(ref.export_params(), *ref.export_optimizer_state(), step=ref.step)
    x = rng.standard_normal((7, 2))
    assert_close(jx.discriminate(x), ref.discriminate(x), 1e-12)
    assert jx.step == 3
