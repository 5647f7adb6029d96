"""CupyBackend on its CPU path (NumPy through the same code as the GPU) against the reference backend.

float64 is held to about 1e-10 of the reference; float32 to float32's own error, measured by running the
reference itself in float32 (ReferenceBackend(dtype="float32")).
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.cupy import backend as cupy_backend
from backends.cupy import resolve_device
from backends.cupy.backend import CupyBackend
from backends.interface import ReferenceBackend
from reference import gan, losses, mlp, optim, recipes
from reference.train import StepInputs, TrainConfig
from tests.helpers import strategies as gst


def _pair(config, seed=0, dtype="float64"):
    ref, cp = ReferenceBackend(config, dtype=dtype), CupyBackend(config, dtype=dtype, device="cpu")
    ref.init(seed)
    cp.init(seed)
    return ref, cp


def _assert_dicts_close(actual, expected, rtol, atol):
    assert list(actual) == list(expected)  # same names, same (interchange) order
    for name in expected:
        assert actual[name].dtype == np.float64 and actual[name].shape == expected[name].shape, name
        np.testing.assert_allclose(actual[name], expected[name], rtol=rtol, atol=atol, err_msg=name)


def _small_config(loss="nonsaturating", **overrides):
    return recipes.default_config("ring", 2, loss, hidden=(8, 6), batch_size=5, **overrides)


def _inputs(config, seed, batch=None):
    b = config.batch_size if batch is None else batch
    rng = np.random.default_rng(seed)
    spec = config.spec
    return StepInputs(rng.standard_normal((config.d_steps, b, spec.data_size)),
                      rng.standard_normal((config.d_steps, b, spec.z_size)),
                      rng.standard_normal((config.g_steps, b, spec.z_size)))


# ----- construction and device selection -----

def test_cpu_device_runs_on_numpy_and_float32_is_the_default():
    cp = CupyBackend(_small_config(), device="cpu")
    assert cp.xp is np and cp.device == "cpu" and cp.dtype == "float32"


def test_automatic_device_is_cuda_only_when_usable():
    usable, _ = cupy_backend.cuda_status()
    assert resolve_device(None)[2] == ("cuda:0" if usable else "cpu")


def test_cuda_without_a_usable_gpu_is_a_clear_error():
    if cupy_backend.cuda_status()[0]:
        pytest.skip("a CUDA device is usable here")
    with pytest.raises(ValueError, match="device 'cuda' was asked for but"):
        CupyBackend(_small_config(), device="cuda")


def test_without_cupy_the_backend_still_works_on_numpy(monkeypatch):
    monkeypatch.setattr(cupy_backend, "cupy", None)
    assert cupy_backend.cuda_status() == (False, "cupy is not installed (pip install cupy-cuda12x)")
    assert resolve_device(None)[0] is np
    with pytest.raises(ValueError, match="cupy is not installed"):
        resolve_device("cuda:0")


@pytest.mark.parametrize("device, message", [("tpu", "unknown device"), ("cuda:x", "bad device"), ("gpu0", "unknown")])
def test_bad_device_names(device, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(device)


def test_bad_dtype():
    with pytest.raises(ValueError, match="unknown dtype"):
        CupyBackend(_small_config(), dtype="float16", device="cpu")


def test_no_state_yet():
    cp = CupyBackend(_small_config(), device="cpu")
    with pytest.raises(RuntimeError, match="init"):
        cp.generate(np.zeros((2, 2)))


# ----- forward passes, losses and gradients: float64 against the reference -----

@given(config=gst.train_configs(), seed=gst.seeds, batch=st.integers(1, 9))
def test_forward_losses_and_grads_match_the_reference(config, seed, batch):
    ref, cp = _pair(config, seed % 1000)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((batch, config.spec.z_size))
    x = 2 * rng.standard_normal((batch + 1, config.spec.data_size))  # real and fake batches may differ
    np.testing.assert_allclose(cp.generate(z), ref.generate(z), rtol=1e-12, atol=1e-12)
    real_out, fake_out = cp.discriminate(x), cp.discriminate(cp.generate(z))
    np.testing.assert_allclose(real_out, ref.discriminate(x), rtol=1e-12, atol=1e-12)
    loss, grads = cp.d_grads(x, z)
    ref_loss, ref_grads = ref.d_grads(x, z)
    assert loss == pytest.approx(ref_loss, rel=1e-10, abs=1e-12)
    _assert_dicts_close(grads, ref_grads, rtol=1e-9, atol=1e-12)
    loss, grads = cp.g_grads(z)
    ref_loss, ref_grads = ref.g_grads(z)
    assert loss == pytest.approx(ref_loss, rel=1e-10, abs=1e-12)
    _assert_dicts_close(grads, ref_grads, rtol=1e-9, atol=1e-12)
    d = cp.d_loss(real_out, fake_out)
    ref_d = ref.d_loss(real_out, fake_out)
    assert d[0] == pytest.approx(ref_d[0], rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(d[1], ref_d[1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d[2], ref_d[2], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss", losses.LOSSES)
@given(real=gst.logits(max_abs=1e4), fake=gst.logits(max_abs=1e4))
def test_losses_at_extreme_logits_are_finite_and_match(loss, real, fake):
    ref, cp = _pair(_small_config(loss))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d, g = cp.d_loss(real, fake), cp.g_loss(fake)
    ref_d, ref_g = ref.d_loss(real, fake), ref.g_loss(fake)
    scale = 1.0 + max(np.abs(real).max(), np.abs(fake).max())  # a difference of means cancels up to this
    for ours, theirs in [(d[0], ref_d[0]), (g[0], ref_g[0])]:
        assert np.isfinite(ours) and ours == pytest.approx(theirs, rel=1e-12, abs=1e-14 * scale)
    for ours, theirs in [(d[1], ref_d[1]), (d[2], ref_d[2]), (g[1], ref_g[1])]:
        assert np.all(np.isfinite(ours))
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_d_grads_and_g_grads_change_nothing():
    ref, cp = _pair(_small_config())
    before = cp.export_params(), cp.export_optimizer_state()
    cp.d_grads(np.ones((3, 2)), np.ones((4, 2)))
    cp.g_grads(np.ones((4, 2)))
    after = cp.export_params(), cp.export_optimizer_state()
    for name in before[0]:
        np.testing.assert_array_equal(before[0][name], after[0][name])
    assert cp.step == 0


# ----- training rounds -----

@given(config=gst.train_configs(), seed=gst.seeds)
def test_rounds_match_the_reference_for_any_config(config, seed):
    """Three rounds of any loss, optimizers, k, m and clipping: parameters, state and metrics agree."""
    ref, cp = _pair(config, seed % 1000)
    for r in range(3):
        inputs = _inputs(config, seed + r)
        m_ref, m_cp = ref.train_step(inputs), cp.train_step(inputs)
    assert cp.step == ref.step == 3
    _assert_dicts_close(cp.export_params(), ref.export_params(), rtol=1e-8, atol=1e-10)
    for ours, theirs in zip(cp.export_optimizer_state(), ref.export_optimizer_state(), strict=True):
        _assert_dicts_close(ours, theirs, rtol=1e-8, atol=1e-12)
    a, b = m_cp.to_dict(), m_ref.to_dict()
    assert a["step"] == b["step"] == 3
    for key in a:
        if key != "step":
            assert np.isnan(a[key]) == np.isnan(b[key]), key
            if not np.isnan(b[key]):
                assert a[key] == pytest.approx(b[key], rel=1e-8, abs=1e-10), key


@pytest.mark.parametrize("loss", losses.LOSSES)
@pytest.mark.parametrize("opt", ["sgd", "sgd_momentum", "adam", "rmsprop", "rmsprop_momentum"])
def test_ten_rounds_each_loss_and_optimizer(loss, opt):
    name, _, momentum = opt.partition("_")
    spec = optim.OptimizerSpec(name, lr=1e-2, momentum=0.8 if momentum else 0.0)
    config = _small_config(loss, d_optimizer=spec, g_optimizer=spec, d_steps=2)
    ref, cp = _pair(config, 3)
    for r in range(10):
        inputs = _inputs(config, r)
        m_ref, m_cp = ref.train_step(inputs), cp.train_step(inputs)
    _assert_dicts_close(cp.export_params(), ref.export_params(), rtol=1e-9, atol=1e-11)
    assert m_cp.d_loss == pytest.approx(m_ref.d_loss, rel=1e-9)
    assert m_cp.g_grad_norm == pytest.approx(m_ref.g_grad_norm, rel=1e-9)


@pytest.mark.parametrize("loss", losses.LOSSES)
def test_float32_stays_within_float32_error_of_the_reference(loss):
    """After 10 rounds in float32, the backend is as close to the float64 reference as the reference's own
    float32 run is (within a factor), i.e. its error is float32's, not a bug's."""
    config = _small_config(loss)
    ref64, _ = _pair(config, 1)
    ref32, cp32 = _pair(config, 1, dtype="float32")
    for r in range(10):
        inputs = _inputs(config, r)
        for backend in (ref64, ref32, cp32):
            backend.train_step(inputs)
    exact = ref64.export_params()
    err = lambda b: max(np.max(np.abs(b.export_params()[k] - exact[k])) for k in exact)  # noqa: E731
    assert err(cp32) <= 10 * err(ref32) + 1e-6
    assert err(cp32) < 1e-3
    z = np.random.default_rng(0).standard_normal((7, 2))
    out = cp32.generate(z)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref32.generate(z), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_train_rounds_equals_train_step_loop_bitwise(dtype):
    config = _small_config("wasserstein", d_steps=3, g_steps=2)
    data = np.random.default_rng(0).standard_normal((50, 2))
    rng = np.random.default_rng(1)
    n, k, m, b = 6, config.d_steps, config.g_steps, config.batch_size
    index = rng.integers(0, len(data), size=(n, k, b))
    z_d, z_g = rng.standard_normal((n, k, b, 2)), rng.standard_normal((n, m, b, 2))
    _, chunked = _pair(config, 2, dtype)
    _, stepped = _pair(config, 2, dtype)
    chunked.set_data(data)
    metrics = chunked.train_rounds(index[:4], z_d[:4], z_g[:4]) + chunked.train_rounds(index[4:], z_d[4:], z_g[4:])
    expected = [stepped.train_step(StepInputs(data[index[r]], z_d[r], z_g[r])) for r in range(n)]
    assert [x.step for x in metrics] == list(range(1, n + 1))
    for ours, theirs in zip(metrics, expected, strict=True):
        np.testing.assert_array_equal(list(ours.to_dict().values()), list(theirs.to_dict().values()))
    for a, b_ in [(chunked.export_params(), stepped.export_params())]:
        for name in a:
            np.testing.assert_array_equal(a[name], b_[name])
    assert chunked.train_rounds(index[:0], z_d[:0], z_g[:0]) == []


def test_export_and_load_roundtrip_continues_identically():
    config = _small_config("minimax")
    _, original = _pair(config, 4)
    for r in range(3):
        original.train_step(_inputs(config, r))
    params, (d_state, g_state) = original.export_params(), original.export_optimizer_state()
    assert list(params) == list(config.spec.param_shapes())
    assert list(d_state) == optim.state_names(config.d_optimizer, gan.network(params, "D"))
    assert d_state["step"].shape == () and float(d_state["step"]) == 3.0
    copy = CupyBackend(config, dtype="float64", device="cpu")
    copy.load_state(params, d_state, g_state, step=original.step)
    for backend in (original, copy):
        backend.train_step(_inputs(config, 99))
    assert copy.step == original.step == 4
    a, b = copy.export_params(), original.export_params()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_load_state_from_the_reference_layout():
    """Parameters and states exported by the reference load here and give the reference's next round."""
    config = _small_config("nonsaturating")
    ref, cp = _pair(config, 5)
    ref.train_step(_inputs(config, 0))
    cp.load_state(ref.export_params(), *ref.export_optimizer_state(), step=ref.step)
    inputs = _inputs(config, 1)
    ref.train_step(inputs)
    cp.train_step(inputs)
    _assert_dicts_close(cp.export_params(), ref.export_params(), rtol=1e-12, atol=1e-14)


def test_bad_state_is_refused_and_nothing_is_lost():
    config = _small_config()
    _, cp = _pair(config)
    cp.train_step(_inputs(config, 0))
    before = cp.export_params()
    params, (d_state, g_state) = cp.export_params(), cp.export_optimizer_state()
    wrong_shape = {**params, "D.0.weight": np.zeros((3, 3))}
    with pytest.raises(ValueError, match="D.0.weight"):
        cp.load_state(wrong_shape, d_state, g_state, 1)
    missing = {k: v for k, v in d_state.items() if k != "D.1.bias.exp_avg"}
    with pytest.raises(ValueError, match="D optimizer state does not match"):
        cp.load_state(params, missing, g_state, 1)
    bad_buffer = {**g_state, "G.0.bias.exp_avg_sq": np.zeros(7)}
    with pytest.raises(ValueError, match="G.0.bias.exp_avg_sq"):
        cp.load_state(params, d_state, bad_buffer, 1)
    with pytest.raises(ValueError, match="NaN"):
        cp.load_state({**params, "G.0.bias": np.full(8, np.nan)}, d_state, g_state, 1)
    with pytest.raises(ValueError, match="step"):
        cp.load_state(params, {**d_state, "step": np.asarray(1.5)}, g_state, 1)
    after = cp.export_params()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    assert cp.step == 1


def test_bad_inputs_get_clear_errors():
    config = _small_config()
    _, cp = _pair(config)
    with pytest.raises(ValueError, match="z must have shape"):
        cp.generate(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="real_out must have shape"):
        cp.d_loss(np.zeros(3), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="StepInputs.z_g"):
        good = _inputs(config, 0)
        cp.train_step(StepInputs(good.real, good.z_d, good.z_g[:, :, :1]))
    with pytest.raises(RuntimeError, match="set_data"):
        cp.train_rounds(np.zeros((1, 1, 5), dtype=int), np.zeros((1, 1, 5, 2)), np.zeros((1, 1, 5, 2)))
    cp.set_data(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="outside the data"):
        cp.train_rounds(np.full((1, 1, 5), 10), np.zeros((1, 1, 5, 2)), np.zeros((1, 1, 5, 2)))
    with pytest.raises(ValueError, match="z_g must have shape"):
        cp.train_rounds(np.zeros((2, 1, 5), dtype=int), np.zeros((2, 1, 5, 2)), np.zeros((1, 1, 5, 2)))
    with pytest.raises(ValueError, match="data must have shape"):
        cp.set_data(np.zeros((10, 3)))
    assert cp.step == 0


# ----- freezing, clipping, buffers -----

def _flat(backend, prefix):
    return {k: v for k, v in backend.export_params().items() if k.startswith(prefix)}


def test_d_update_freezes_g_and_g_update_freezes_d_bitwise():
    config = _small_config("nonsaturating")
    _, cp = _pair(config)
    g_before, g_state_before = cp.G.params.copy(), cp.export_optimizer_state()[1]
    work = cp._d_work(5, 5)
    work.real[...] = np.ones((5, 2))
    cp._d_update(work, np.ones((5, 2)))
    np.testing.assert_array_equal(cp.G.params, g_before)
    for name, value in cp.export_optimizer_state()[1].items():
        np.testing.assert_array_equal(value, g_state_before[name])
    d_before = cp.D.params.copy()
    cp._g_update(cp._g_work(5), np.ones((5, 2)))
    np.testing.assert_array_equal(cp.D.params, d_before)
    assert not np.array_equal(cp.G.params, g_before)


@given(seed=gst.seeds, clip=st.floats(1e-3, 0.2))
def test_clipping_clamps_every_critic_parameter_like_the_reference(seed, clip):
    spec = optim.OptimizerSpec("sgd", lr=0.5)
    config = _small_config("wasserstein", d_optimizer=spec, g_optimizer=spec, clip_value=clip)
    ref, cp = _pair(config, seed % 100)
    for r in range(2):
        inputs = _inputs(config, seed + r)
        ref.train_step(inputs)
        cp.train_step(inputs)
    d = _flat(cp, "D.")
    assert all(np.max(np.abs(v)) <= clip for v in d.values())
    assert any(np.max(np.abs(v)) == clip for v in d.values())  # lr 0.5 pushes some to the bound
    _assert_dicts_close(cp.export_params(), ref.export_params(), rtol=1e-10, atol=1e-12)


def test_buffers_are_allocated_once_and_reused():
    config = _small_config("nonsaturating", d_steps=2)
    _, cp = _pair(config)
    data = np.random.default_rng(0).standard_normal((40, 2))
    cp.set_data(data)
    cp.train_step(_inputs(config, 0))

    def buffers():
        objects = [cp.G.params, cp.D.params, cp.G.grads, cp.D.grads, *cp.d_opt.buffers.values(),
                   *cp.g_opt.buffers.values()]
        for work in cp._workspaces.values():
            for p in (work.g_pass, work.d_pass):
                objects += p.acts + p.grads
            objects += [work.term, *work.consts]
        return objects

    first = buffers()
    assert len(cp._workspaces) == 2  # one D-step and one G-step workspace for batch size 5
    cp.train_step(_inputs(config, 1))
    rng = np.random.default_rng(2)
    cp.train_rounds(rng.integers(0, 40, (3, 2, 5)), rng.standard_normal((3, 2, 5, 2)),
                    rng.standard_normal((3, 1, 5, 2)))
    second = buffers()
    assert len(second) == len(first) and all(a is b for a, b in zip(first, second, strict=True))
    assert cp.D.W[0].base is cp.D.params or cp.D.W[0].base.base is cp.D.params  # views of the flat buffer


def test_uneven_real_and_fake_batches():
    """Real and fake batches of different sizes are averaged separately, as the reference does."""
    config = _small_config("minimax")
    ref, cp = _pair(config)
    rng = np.random.default_rng(0)
    inputs = StepInputs(rng.standard_normal((1, 7, 2)), rng.standard_normal((1, 3, 2)), rng.standard_normal((1, 4, 2)))
    ref.train_step(inputs)
    cp.train_step(inputs)
    _assert_dicts_close(cp.export_params(), ref.export_params(), rtol=1e-12, atol=1e-14)


def test_tanh_sigmoid_leaky_networks():
    """Every activation through a full round (the recipes use ReLU only)."""
    for hidden, out in [("tanh", "sigmoid"), ("leaky_relu", "tanh"), ("sigmoid", "identity")]:
        spec = gan.GANSpec(mlp.MLPSpec(3, (6,), 2, hidden, out, 0.1), mlp.MLPSpec(2, (5, 4), 1, hidden), "minimax")
        config = TrainConfig(spec, batch_size=4)
        ref, cp = _pair(config, 8)
        for r in range(3):
            inputs = _inputs(config, r)
            ref.train_step(inputs)
            cp.train_step(inputs)
        _assert_dicts_close(cp.export_params(), ref.export_params(), rtol=1e-10, atol=1e-12)
