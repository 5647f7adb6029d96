"""Instance noise and the three gradient penalties in the CuPy backend, against the reference.

The new fused kernels are checked against their definitions (and traced into one CUDA kernel each, without
a GPU); the backend's D and G steps, rounds and chunks against ReferenceBackend in float64 to ~1e-10, for every
activation (tanh and sigmoid have f'' != 0, so their double backpropagation has dP/dh terms); float32 within
float32's own error; and the shared CLI end to end.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from backends.cli import main
from backends.cupy.backend import CupyBackend
from backends.cupy.kernels import cupy, kernels_for
from backends.interface import ALL_FEATURES, ReferenceBackend
from reference import gan, mlp, optim
from reference.activations import ACTIVATIONS, get_activation, sigmoid
from reference.penalty import PENALTIES, PenaltySpec
from reference.train import StepInputs, TrainConfig
from tests.cupy.test_cupy_kernels import _fake_cupy_array, _trace

K = kernels_for(np)
DTYPES = (np.float64, np.float32)
ROOT = Path(__file__).resolve().parents[2]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _close(dtype):
    return {np.float64: dict(rtol=1e-14, atol=1e-15), np.float32: dict(rtol=2e-6, atol=1e-7)}[dtype]


# ----- the kernels against their definitions -----

@pytest.mark.parametrize("dtype", DTYPES)
def test_noise_and_interpolation_kernels(dtype):
    rng = _rng(1)
    x, n, real, fake = (rng.standard_normal((5, 3)).astype(dtype) for _ in range(4))
    t = rng.uniform(0, 1, (5, 1)).astype(dtype)
    y = x.copy()
    K.add_noise(y, n, 0.3)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, x + dtype(0.3) * n)  # the reference's x + sigma * noise, bitwise
    out = np.empty_like(x)
    K.noisy(out, x, n, 0.3)
    np.testing.assert_array_equal(out, x + dtype(0.3) * n)
    K.noisy(out, x, n, 1.0)  # d_grads hands in noise already scaled: sigma = 1 adds it unchanged
    np.testing.assert_array_equal(out, x + n)
    K.interpolate(out, real, fake, t)
    np.testing.assert_array_equal(out, t * real + (1 - t) * fake)
    K.interpolate(out, real, fake, np.ones_like(t))  # t = 1: the real sample, t = 0: the fake one
    np.testing.assert_array_equal(out, real)
    K.interpolate(out, real, fake, np.zeros_like(t))
    np.testing.assert_array_equal(out, fake)


def _preactivations(dtype, seed):
    h = (3 * _rng(seed).standard_normal((6, 4))).astype(dtype)
    h[0] = 0.0  # the kinks: relu'(0) = 0, leaky_relu'(0) = slope
    h[1, :2] = (-40.0, 40.0)  # saturated tanh and sigmoid
    return h


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_times_deriv_is_u_times_derivative(name, dtype):
    act = get_activation(name, 0.15)
    h = _preactivations(dtype, 2)
    y = act.forward(h).astype(dtype)
    u = _rng(3).standard_normal(h.shape).astype(dtype)
    kernel = K.times_deriv[name]
    if kernel is None:
        assert name == "identity"  # a = u: the backend aliases the buffer
        return
    a = np.full_like(u, np.nan)
    kernel(a, u, y, 0.15)
    assert a.dtype == dtype
    np.testing.assert_allclose(a, u * act.derivative(h), rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_second_order_gives_grad_u_and_grad_h(name, dtype):
    """u <- ga f'(h) and ga <- ga u f''(h), both from the old values; None exactly where f'' = 0."""
    act = get_activation(name, 0.15)
    h = _preactivations(dtype, 4)
    kernel = K.second_order[name]
    if kernel is None:
        assert name in ("identity", "relu", "leaky_relu")
        np.testing.assert_array_equal(act.second_derivative(h), 0.0)
        return
    y = act.forward(h).astype(dtype)
    rng = _rng(5)
    ga0, u0 = (rng.standard_normal(h.shape).astype(dtype) for _ in range(2))
    ga, u = ga0.copy(), u0.copy()
    kernel(ga, u, y, 0.15)
    assert ga.dtype == u.dtype == dtype
    tol = dict(rtol=8 * np.finfo(dtype).eps, atol=8 * np.finfo(dtype).tiny)
    np.testing.assert_allclose(u, ga0 * act.derivative(h), **tol)
    np.testing.assert_allclose(ga, ga0 * u0 * act.second_derivative(h), **tol)
    # f'' itself against central differences of the reference's f' (float64 only)
    if dtype == np.float64:
        hh = np.linspace(-3, 3, 13)[None]
        yy = act.forward(hh)
        f2 = np.ones_like(hh)  # ga = 1, u = 1: ga becomes f''(h)
        kernel(f2, np.ones_like(hh), yy, 0.15)
        numeric = (act.derivative(hh + 1e-6) - act.derivative(hh - 1e-6)) / 2e-6
        np.testing.assert_allclose(f2, numeric, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_r1_and_wgan_gp_weights(dtype):
    sq = np.array([[0.0], [0.25], [1.0], [9.0], [1e-30]], dtype=dtype)
    term, k = np.empty_like(sq), np.empty_like(sq)
    K.r1_weights(sq, 0.1, term, k)
    assert term.dtype == k.dtype == dtype
    np.testing.assert_allclose(term, 0.1 * sq, **_close(dtype))
    np.testing.assert_allclose(k, np.full_like(sq, 0.2), **_close(dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ||g|| = 0: no division by zero, no NaN
        K.wgan_gp_weights(sq, 0.1, term, k)
    norm = np.sqrt(sq.astype(np.float64))
    np.testing.assert_allclose(term, 0.1 * (norm - 1) ** 2, **_close(dtype))
    expected_k = np.where(norm > 0, 0.2 * (norm - 1) / np.where(norm > 0, norm, 1), 0.0)
    np.testing.assert_allclose(k[1:], expected_k[1:], **_close(dtype))
    assert k[0, 0] == 0.0 and term[0, 0] == pytest.approx(0.1)  # the safe norm: derivative 0 where g = 0
    assert k[2, 0] == 0.0  # ||g|| = 1: the penalty's minimum
    # k g = d/dg [coef (||g|| - 1)^2], by central differences on a 3-vector
    if dtype == np.float64:
        g = np.array([0.3, -1.2, 0.5])
        term1, k1 = np.empty((1, 1)), np.empty((1, 1))
        K.wgan_gp_weights(np.array([[g @ g]]), 0.1, term1, k1)
        f = lambda v: 0.1 * (np.linalg.norm(v) - 1) ** 2  # noqa: E731
        numeric = [(f(g + e) - f(g - e)) / 2e-6 for e in 1e-6 * np.eye(3)]
        np.testing.assert_allclose(k1[0, 0] * g, numeric, rtol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_roth_weights(dtype):
    """Real rows (s = -1): c = (1 - p)^2; fake rows (s = +1): c = p^2; dP/dy added to what grad_y held."""
    y = np.array([[-3.0], [0.0], [2.5], [-3.0], [0.0], [2.5], [800.0], [-800.0]], dtype=dtype)
    s = np.array([[-1.0]] * 3 + [[1.0]] * 3 + [[-1.0], [1.0]], dtype=dtype)
    coef = np.linspace(0.1, 0.8, 8).astype(dtype)[:, None]
    sq = np.linspace(0.5, 4.0, 8).astype(dtype)[:, None]
    grad_y0 = _rng(6).standard_normal((8, 1)).astype(dtype)
    term, k, grad_y = np.empty_like(y), np.empty_like(y), grad_y0.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow at |y| = 800
        K.roth_weights(y, s, coef, sq, term, k, grad_y)
    assert term.dtype == k.dtype == grad_y.dtype == dtype
    y64, s64, coef64, sq64 = (a.astype(np.float64) for a in (y, s, coef, sq))
    p = sigmoid(y64)
    c = np.where(s64 < 0, (1 - p) ** 2, p**2)
    dc = np.where(s64 < 0, -2 * (1 - p) ** 2 * p, 2 * p**2 * (1 - p))
    np.testing.assert_allclose(term, coef64 * c * sq64, **_close(dtype))
    np.testing.assert_allclose(k, 2 * coef64 * c, **_close(dtype))
    np.testing.assert_allclose(grad_y, grad_y0 + coef64 * sq64 * dc, **_close(dtype))
    if dtype == np.float64:  # dc/dy by central differences of c
        def c_of(v):
            t, kk, gy = np.empty_like(v), np.empty_like(v), np.zeros_like(v)
            K.roth_weights(v, s64[:6], np.ones_like(v), np.ones_like(v), t, kk, gy)
            return t, gy
        _, gy = c_of(y64[:6])
        numeric = (c_of(y64[:6] + 1e-6)[0] - c_of(y64[:6] - 1e-6)[0]) / 2e-6
        np.testing.assert_allclose(gy, numeric, rtol=1e-7, atol=1e-10)


# ----- the new kernels trace to one CUDA elementwise kernel each -----

def _remedy_trace_cases(dtype):
    kernels = kernels_for(cupy)
    mat = lambda: _fake_cupy_array((4, 3), dtype)  # noqa: E731
    col = lambda: _fake_cupy_array((4, 1), dtype)  # noqa: E731
    cases = [
        ("add_noise", kernels.add_noise, (mat(), mat(), 0.3), {0}),
        ("noisy", kernels.noisy, (mat(), mat(), mat(), 0.3), {0}),
        ("interpolate", kernels.interpolate, (mat(), mat(), mat(), col()), {0}),
        ("r1_weights", kernels.r1_weights, (col(), 0.1, col(), col()), {2, 3}),
        ("roth_weights", kernels.roth_weights, (col(), col(), col(), col(), col(), col(), col()), {4, 5, 6}),
        ("wgan_gp_weights", kernels.wgan_gp_weights, (col(), 0.1, col(), col()), {2, 3}),
    ]
    cases += [(f"times_deriv_{n}", k, (mat(), mat(), mat(), 0.2), {0})
              for n, k in kernels.times_deriv.items() if k is not None]
    cases += [(f"second_order_{n}", k, (mat(), mat(), mat(), 0.2), {0, 1})
              for n, k in kernels.second_order.items() if k is not None]
    return cases


@pytest.mark.skipif(cupy is None, reason="cupy is not installed")
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_new_kernel_traces_to_one_cuda_elementwise_kernel(dtype):
    ctype = {np.float64: "double", np.float32: "float"}[dtype]
    cases = _remedy_trace_cases(dtype)
    assert len(cases) == 12
    for name, fused, args, written in cases:
        kernel, kwargs = _trace(fused, args)
        assert type(kernel).__name__ == "ElementwiseKernel", name
        assert kwargs == {} and kernel.out_params == (), name
        params = kernel.in_params
        array_params = [p for p, a in zip(params, args, strict=True) if isinstance(a, cupy.ndarray)]
        assert all(p.dtype == dtype for p in array_params), name
        assert {i for i, p in enumerate(params) if not p.is_const} == written, name
        body = kernel.operation
        lines = body.splitlines()  # no other precision: no float16 anywhere (what cupy.fuse makes of an expression
        # of scalars alone), no double variables in float32 (constants are `const double`, cast at their use)
        assert "float16" not in body and (dtype == np.float64 or not any(x.startswith("double ") for x in lines)), name
        temporaries = [line for line in body.splitlines()
                       if line.startswith(("float v", "double v")) and line.endswith(";") and "=" not in line]
        assert temporaries and all(line.startswith(ctype + " ") for line in temporaries), (name, temporaries)


# ----- d_grads and g_grads against the reference -----

def _config(kind, hidden="tanh", out="identity", loss=None, weight=3.0, **options):
    """A small GAN with D's hidden and output activations given; WGAN-GP gets the Wasserstein loss."""
    loss = loss or ("wasserstein" if kind == "wgan-gp" else "nonsaturating")
    spec = gan.GANSpec(mlp.MLPSpec(3, (5,), 2, "tanh"), mlp.MLPSpec(2, (6, 4), 1, hidden, out, 0.2), loss)
    penalty = None if kind is None else PenaltySpec(kind, weight)
    return TrainConfig(spec, batch_size=4, penalty=penalty, **options)


def _pair(config, seed=0, dtype="float64"):
    ref, cp = ReferenceBackend(config, dtype=dtype), CupyBackend(config, dtype=dtype, device="cpu")
    ref.init(seed)
    cp.init(seed)
    return ref, cp


def _assert_dicts_close(actual, expected, rtol=1e-10, atol=1e-12):
    assert list(actual) == list(expected)
    for name in expected:
        assert actual[name].dtype == np.float64 and actual[name].shape == expected[name].shape, name
        np.testing.assert_allclose(actual[name], expected[name], rtol=rtol, atol=atol, err_msg=name)


def test_every_feature_is_implemented():
    assert ALL_FEATURES <= CupyBackend.features
    CupyBackend(_config("roth", instance_noise=0.1), device="cpu")  # refused before this backend had them


# (D's hidden activation, D's output activation): every activation, curved ones also at the output
ACTIVATION_CASES = [("identity", "identity"), ("relu", "identity"), ("leaky_relu", "tanh"), ("tanh", "identity"),
                    ("sigmoid", "sigmoid"), ("tanh", "tanh")]


@pytest.mark.parametrize("kind", [None, *PENALTIES])
@pytest.mark.parametrize("hidden, out", ACTIVATION_CASES)
def test_d_grads_and_g_grads_match_the_reference(kind, hidden, out):
    config = _config(kind, hidden, out)
    ref, cp = _pair(config, 1)
    rng = _rng(7)
    n_fake = 4 if kind == "wgan-gp" else 3  # uneven batches where the penalty allows them
    x, z = 1.5 * rng.standard_normal((4, 2)), rng.standard_normal((n_fake, 3))
    for noisy in (False, True):
        options = {}
        if noisy:
            options = dict(real_noise=0.3 * rng.standard_normal((4, 2)),
                           fake_noise=0.3 * rng.standard_normal((n_fake, 2)))
        if kind == "wgan-gp":
            options["mix"] = rng.uniform(0, 1, (4, 1))
        loss, grads = cp.d_grads(x, z, **options)
        ref_loss, ref_grads = ref.d_grads(x, z, **options)
        assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-14)
        _assert_dicts_close(grads, ref_grads)
        if kind is not None:  # the penalty is really in there
            plain = ReferenceBackend(_config(None, hidden, out, config.spec.loss))
            plain.init(1)
            assert abs(loss - plain.d_grads(x, z, **{k: v for k, v in options.items() if k != "mix"})[0]) > 1e-6
        fake_noise = options.get("fake_noise")
        loss, grads = cp.g_grads(z, fake_noise=fake_noise)
        ref_loss, ref_grads = ref.g_grads(z, fake_noise=fake_noise)
        assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-14)
        _assert_dicts_close(grads, ref_grads)
    assert cp.step == 0


def test_wgan_gp_at_a_zero_input_gradient_is_finite():
    """A critic that ignores its input (first-layer weights 0) has g = 0: the safe norm gives derivative 0."""
    config = _config("wgan-gp", "tanh", "identity")
    ref, cp = _pair(config, 2)
    params, (d_state, g_state) = cp.export_params(), cp.export_optimizer_state()
    params["D.0.weight"][...] = 0.0
    for backend in (ref, cp):
        backend.load_state(params, d_state, g_state, 0)
    rng = _rng(8)
    x, z, mix = rng.standard_normal((4, 2)), rng.standard_normal((4, 3)), rng.uniform(0, 1, (4, 1))
    loss, grads = cp.d_grads(x, z, mix=mix)
    ref_loss, ref_grads = ref.d_grads(x, z, mix=mix)
    assert np.isfinite(loss) and loss == pytest.approx(ref_loss, rel=1e-12)
    _assert_dicts_close(grads, ref_grads)


def test_bad_remedy_inputs_get_clear_errors():
    _, cp = _pair(_config("wgan-gp"))
    x, z = np.zeros((4, 2)), np.zeros((4, 3))
    with pytest.raises(ValueError, match="needs the interpolation weights"):
        cp.d_grads(x, z)
    with pytest.raises(ValueError, match="pairwise"):
        cp.d_grads(x, z[:3], mix=np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"mix must have shape \(4, 1\)"):
        cp.d_grads(x, z, mix=np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"real_noise must have shape \(4, 2\)"):
        cp.d_grads(x, z, real_noise=np.zeros((5, 2)), mix=np.zeros((4, 1)))
    with pytest.raises(ValueError, match="fake_noise contains NaN"):
        cp.g_grads(z, fake_noise=np.full((4, 2), np.nan))


# ----- rounds and chunks against the reference -----

ROUND_CASES = [("r1", "tanh", "minimax"), ("r1", "relu", "nonsaturating"), ("r1", "leaky_relu", "wasserstein"),
               ("roth", "sigmoid", "nonsaturating"), ("roth", "leaky_relu", "minimax"),
               ("wgan-gp", "tanh", "wasserstein"), (None, "sigmoid", "minimax")]


def _round_config(kind, hidden, loss, noise=0.3):
    adam = optim.OptimizerSpec("adam", lr=1e-2, beta1=0.0, beta2=0.9)
    return _config(kind, hidden, "identity", loss, weight=2.0, d_optimizer=adam, g_optimizer=adam, d_steps=2,
                   g_steps=2, instance_noise=noise, instance_noise_anneal=3)  # sigma 0.3, 0.2, 0.1, then 0


def _chunk(config, n, rows, seed):
    rng = _rng(seed)
    k, m, b, d, zs = config.d_steps, config.g_steps, config.batch_size, config.spec.data_size, config.spec.z_size
    index = rng.integers(0, rows, (n, k, b))
    z_d, z_g = rng.standard_normal((n, k, b, zs)), rng.standard_normal((n, m, b, zs))
    extras = {}
    if config.needs_noise:
        extras = {"noise_real": rng.standard_normal((n, k, b, d)), "noise_fake": rng.standard_normal((n, k, b, d)),
                  "noise_g": rng.standard_normal((n, m, b, d))}
    if config.needs_mix:
        extras["mix"] = rng.uniform(0, 1, (n, k, b, 1))
    return index, z_d, z_g, extras


def _assert_metrics_close(ours, theirs, rel=1e-9):
    a, b = ours.to_dict(), theirs.to_dict()
    assert a["step"] == b["step"]
    for key in b:
        assert np.isnan(a[key]) == np.isnan(b[key]), key
        if not np.isnan(b[key]):
            assert a[key] == pytest.approx(b[key], rel=rel, abs=1e-11), key


@pytest.mark.parametrize("kind, hidden, loss", ROUND_CASES)
def test_train_step_and_train_rounds_match_the_reference_round_by_round(kind, hidden, loss):
    """Five rounds with annealed instance noise and a penalty: train_step round by round, and train_rounds in
    chunks of 3 and 2, against the reference's train_step; train_rounds equals this backend's train_step bitwise."""
    config = _round_config(kind, hidden, loss)
    data = 2 * _rng(0).standard_normal((40, 2))
    index, z_d, z_g, extras = _chunk(config, 5, len(data), 1)
    ref, stepped = _pair(config, 0)  # (seed 3 starts a ReLU critic this small that dies in round 1)
    _, chunked = _pair(config, 0)
    chunked.set_data(data)
    rounds = chunked.train_rounds(index[:3], z_d[:3], z_g[:3], **{k: v[:3] for k, v in extras.items()})
    rounds += chunked.train_rounds(index[3:], z_d[3:], z_g[3:], **{k: v[3:] for k, v in extras.items()})
    for r in range(5):
        inputs = StepInputs(data[index[r]], z_d[r], z_g[r], **{k: v[r] for k, v in extras.items()})
        expected, ours = ref.train_step(inputs), stepped.train_step(inputs)
        _assert_metrics_close(ours, expected)
        assert (ours.d_penalty > 0) == (kind is not None) and expected.d_penalty == pytest.approx(ours.d_penalty)
        np.testing.assert_array_equal(list(rounds[r].to_dict().values()), list(ours.to_dict().values()))
        _assert_dicts_close(stepped.export_params(), ref.export_params(), rtol=1e-9, atol=1e-11)
    for ours, theirs in zip(stepped.export_optimizer_state(), ref.export_optimizer_state(), strict=True):
        _assert_dicts_close(ours, theirs, rtol=1e-8, atol=1e-12)
    a, b = chunked.export_params(), stepped.export_params()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_noise_is_scaled_by_the_annealed_sigma_of_each_round():
    """With sigma annealed to 0 after 3 rounds, round 4 onwards ignores the noise arrays entirely, and a backend
    loaded at step 3 trains exactly like one without instance noise; before that, noise changes the round."""
    noisy, plain = _round_config("r1", "tanh", "minimax"), _round_config("r1", "tanh", "minimax", noise=0.0)
    _, a = _pair(noisy, 4)
    _, b = _pair(plain, 4)
    _, c = _pair(noisy, 4)
    state = a.export_params(), *a.export_optimizer_state()
    a.load_state(*state, step=3)
    b.load_state(*state, step=3)
    c.load_state(*state, step=2)  # sigma = 0.1
    index, z_d, z_g, extras = _chunk(noisy, 1, 10, 5)
    data = _rng(1).standard_normal((10, 2))
    inputs = StepInputs(data[index[0]], z_d[0], z_g[0], **{k: 100 * v[0] for k, v in extras.items()})
    ma, mb, mc = a.train_step(inputs), b.train_step(inputs), c.train_step(inputs)
    assert ma.d_loss == mb.d_loss and ma.g_loss == mb.g_loss and ma.d_penalty == mb.d_penalty
    assert abs(mc.d_loss - ma.d_loss) > 1e-3


@pytest.mark.parametrize("kind", PENALTIES)
def test_penalty_and_noise_buffers_are_allocated_once_and_reused(kind):
    config = _round_config(kind, "tanh", "wasserstein" if kind == "wgan-gp" else "minimax")
    _, cp = _pair(config)
    data = _rng(0).standard_normal((40, 2))
    cp.set_data(data)

    def buffers():
        objects = []
        for work in cp._workspaces.values():
            objects += [work.d_in, *work.d_pass.acts, *work.d_pass.grads]
            pen = getattr(work, "penalty", None)
            if pen is not None:
                objects += [*pen.u, *pen.a, *(g for g in pen.ga if g is not None), pen.gg, pen.sq, pen.term, pen.k,
                            pen.flat]
        return objects

    index, z_d, z_g, extras = _chunk(config, 4, len(data), 6)
    cp.train_rounds(index[:2], z_d[:2], z_g[:2], **{k: v[:2] for k, v in extras.items()})
    first = buffers()
    assert len(cp._workspaces) == 2 and cp._d_work(4, 4).penalty is not None and cp._g_work(4).d_in is not None
    cp.train_rounds(index[2:], z_d[2:], z_g[2:], **{k: v[2:] for k, v in extras.items()})
    cp.train_step(StepInputs(data[index[0]], z_d[0], z_g[0], **{k: v[0] for k, v in extras.items()}))
    second = buffers()
    assert len(second) == len(first) and all(a is b for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("kind", PENALTIES)
def test_float32_stays_within_float32_error_of_the_reference(kind):
    config = _round_config(kind, "tanh", "wasserstein" if kind == "wgan-gp" else "nonsaturating")
    data = _rng(0).standard_normal((40, 2))
    index, z_d, z_g, extras = _chunk(config, 4, len(data), 2)
    ref64, _ = _pair(config, 1)
    ref32, cp32 = _pair(config, 1, "float32")
    rng = _rng(3)
    x, z = rng.standard_normal((4, 2)), rng.standard_normal((4, 3))
    options = dict(real_noise=0.2 * rng.standard_normal((4, 2)), fake_noise=0.2 * rng.standard_normal((4, 2)))
    if kind == "wgan-gp":
        options["mix"] = rng.uniform(0, 1, (4, 1))
    loss64, grads64 = ref64.d_grads(x, z, **options)
    loss32, grads32 = cp32.d_grads(x, z, **options)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for name in grads64:
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=1e-4, atol=1e-5, err_msg=name)
    cp32.set_data(data)
    metrics = cp32.train_rounds(index, z_d, z_g, **extras)
    for r in range(4):
        inputs = StepInputs(data[index[r]], z_d[r], z_g[r], **{k: v[r] for k, v in extras.items()})
        m64 = ref64.train_step(inputs)
        ref32.train_step(inputs)
        assert metrics[r].d_penalty == pytest.approx(m64.d_penalty, rel=1e-3, abs=1e-6)
    exact = ref64.export_params()
    err = lambda b: max(np.max(np.abs(b.export_params()[k] - exact[k])) for k in exact)  # noqa: E731
    assert err(cp32) <= 10 * err(ref32) + 1e-6 and err(cp32) < 1e-3


# ----- the shared CLI, end to end -----

def cli_against_reference(tmp_path, args: list[str]) -> list[dict]:
    """Run `python -m backends.cupy ARGS --device cpu` and the reference CLI on the same ARGS; assert every logged
    metric agrees (rel 1e-8) and return the cupy run's metrics.jsonl records."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "backends.cupy", *args, "--device", "cpu",
                             "--out", str(tmp_path / "cupy")], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert main("reference", [*args, "--out", str(tmp_path / "ref")]) == 0
    ours, theirs = ([json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
                    for name in ("cupy", "ref"))
    assert len(ours) == len(theirs) >= 1 and ours[-1]["step"] == 5
    for a, b in zip(ours, theirs, strict=True):
        for key, value in b.items():
            if value is None:
                assert a[key] is None, key
            else:
                assert a[key] == pytest.approx(value, rel=1e-8, abs=1e-12), key
    return ours


def test_cli_train_with_roth_and_instance_noise(tmp_path):
    """`python -m backends.cupy train --steps 5 --penalty roth --instance-noise 0.1` runs end to end, and its
    metrics are the reference CLI's for the same run (float64: the CLI's default dtype)."""
    ours = cli_against_reference(tmp_path, ["train", "--steps", "5", "--penalty", "roth", "--instance-noise", "0.1",
                                            "--no-progress"])
    config = json.loads((tmp_path / "cupy" / "config.json").read_text())["train_config"]
    assert config["penalty"] == {"kind": "roth", "weight": 1.0} and config["instance_noise"] == 0.1
    summary = json.loads((tmp_path / "cupy" / "summary.json").read_text())
    assert summary["backend"]["name"] == "cupy" and summary["steps"] == 5
    assert all(a["d_penalty"] > 0 for a in ours)
