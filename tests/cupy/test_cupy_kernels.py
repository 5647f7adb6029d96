"""The CuPy backend's fused kernels, checked on NumPy arrays against the reference's math.

The kernels are `cupy.fuse` objects; called with NumPy arrays they run their Python body as NumPy code,
which is exactly what these tests call. The last tests trace each kernel the way `cupy.fuse` does for
CuPy arrays (without a GPU) and check the CUDA elementwise kernel it would compile.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given

from backends.cupy.kernels import cupy, kernels_for
from reference import losses, optim
from reference.activations import ACTIVATIONS, get_activation
from tests.helpers import strategies as gst

K = kernels_for(np)
DTYPES = (np.float64, np.float32)


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.skipif(cupy is None, reason="cupy is not installed")
def test_kernels_are_cupy_fuse_objects_running_on_numpy():
    fused = [*K.bias_act.values(), *(k for k in K.act_grad.values() if k is not None), K.logistic_loss,
             K.linear_loss, K.sgd, K.sgd_momentum, K.adam, K.rmsprop, K.rmsprop_momentum]
    assert all(type(k).__name__ == "Fusion" and type(k).__module__.startswith("cupy") for k in fused)
    h = np.array([[-1.0, 2.0]])
    K.bias_act["relu"](h, np.array([0.5, 0.5]), 0.0)  # in place, through cupy.fuse's NumPy path
    np.testing.assert_array_equal(h, [[0.0, 2.5]])


def test_unknown_array_module_is_refused():
    with pytest.raises(ValueError, match="no kernels for array module"):
        kernels_for(warnings)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
@given(seed=gst.seeds, slope=gst.leaky_slopes())
def test_bias_act_is_activation_of_h_plus_b(name, dtype, seed, slope):
    rng = _rng(seed)
    h = (3 * rng.standard_normal((5, 4))).astype(dtype)
    h[0, 0] = 0.0  # a kink
    b = rng.standard_normal(4).astype(dtype)
    b[0] = 0.0
    expected = get_activation(name, slope).forward(h + b)
    out = h.copy()
    K.bias_act[name](out, b, slope)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=2 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
@given(seed=gst.seeds, slope=gst.leaky_slopes())
def test_act_grad_is_upstream_times_derivative(name, dtype, seed, slope):
    """g * f'(h), computed from y = f(h), equals the reference's backward(g, h), kinks (h = 0) included."""
    rng = _rng(seed)
    act = get_activation(name, slope)
    h = (3 * rng.standard_normal((6, 3))).astype(dtype)
    h[0] = 0.0
    y = act.forward(h).astype(dtype)
    g = rng.standard_normal((6, 3)).astype(dtype)
    expected = act.backward(g, h)
    kernel = K.act_grad[name]
    out = g.copy()
    if kernel is not None:
        kernel(out, y, slope)
    else:
        assert name == "identity"
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).tiny)


# The four logit losses as (sign, coef) of c * softplus(s * l), as backend.py sets them.
LOGIT_CASES = {"d_real": (-1.0, 1.0), "d_fake": (1.0, 1.0), "g_minimax": (1.0, -1.0), "g_nonsaturating": (-1.0, 1.0)}


@pytest.mark.parametrize("case", list(LOGIT_CASES))
@given(logits=gst.logits(max_abs=1e4))
def test_logistic_loss_matches_reference_losses(case, logits):
    """Loss terms sum to the reference loss and the gradient is the reference's, finite up to |l| = 1e4.

    The D cases isolate one half of the reference's D loss by giving the other half a logit of -+1e9,
    whose softplus term and gradient are exactly 0.
    """
    sign, coef = LOGIT_CASES[case]
    coef /= len(logits)
    if case == "d_real":
        ref_loss, ref_grad = losses.minimax_d_loss(logits, np.full((1, 1), -1e9))[:2]
    elif case == "d_fake":
        ref_loss, _, ref_grad = losses.minimax_d_loss(np.full((1, 1), 1e9), logits)
    elif case == "g_minimax":
        ref_loss, ref_grad = losses.minimax_g_loss(logits)
    else:
        ref_loss, ref_grad = losses.nonsaturating_g_loss(logits)
    term, grad = np.empty_like(logits), np.empty_like(logits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings at any logit size
        K.logistic_loss(logits, np.full_like(logits, sign), np.full_like(logits, coef), term, grad)
    assert np.all(np.isfinite(term)) and np.all(np.isfinite(grad))
    assert term.sum() == pytest.approx(ref_loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


@given(logits=gst.logits(max_abs=1e4))
def test_logistic_loss_float32_is_finite_and_close(logits):
    x = logits.astype(np.float32)
    n = len(x)
    term, grad = np.empty_like(x), np.empty_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        K.logistic_loss(x, np.full_like(x, -1.0), np.full_like(x, 1.0 / n), term, grad)
    assert term.dtype == grad.dtype == np.float32
    ref_loss, ref_grad = losses.nonsaturating_g_loss(x.astype(np.float64))
    assert float(term.sum(dtype=np.float64)) == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)


def test_logistic_loss_known_values():
    """softplus(0) = ln 2, sigmoid(0) = 1/2; softplus(+-1e4) = 1e4 or 0 exactly."""
    logits = np.array([[0.0], [1e4], [-1e4]])
    term, grad = np.empty_like(logits), np.empty_like(logits)
    K.logistic_loss(logits, np.ones_like(logits), np.ones_like(logits), term, grad)
    np.testing.assert_allclose(term[:, 0], [np.log(2.0), 1e4, 0.0], rtol=1e-15)
    np.testing.assert_allclose(grad[:, 0], [0.5, 1.0, 0.0], rtol=1e-15)


@given(real=gst.logits(), fake=gst.logits())
def test_linear_loss_matches_wasserstein(real, fake):
    stacked = np.concatenate([real, fake])
    sc = np.concatenate([np.full_like(real, -1.0 / len(real)), np.full_like(fake, 1.0 / len(fake))])
    term, grad = np.empty_like(stacked), np.empty_like(stacked)
    K.linear_loss(stacked, sc, term, grad)
    ref_loss, ref_real, ref_fake = losses.wasserstein_critic_loss(real, fake)
    assert term.sum() == pytest.approx(ref_loss, rel=1e-12, abs=1e-12 * (1 + np.abs(stacked).max()))
    np.testing.assert_array_equal(grad, np.concatenate([ref_real, ref_fake]))


def _run_kernel_optimizer(spec, p, g, state, t):
    """One update with the backend's kernels, the way backend._Optimizer calls them (in place)."""
    if spec.name == "sgd":
        if spec.momentum > 0:
            K.sgd_momentum(p, g, state["momentum_buffer"], spec.lr, spec.momentum)
        else:
            K.sgd(p, g, spec.lr)
    elif spec.name == "adam":
        K.adam(p, g, state["exp_avg"], state["exp_avg_sq"], spec.beta1, 1.0 - spec.beta1, spec.beta2,
               1.0 - spec.beta2, spec.lr / (1.0 - spec.beta1**t), float(np.sqrt(1.0 - spec.beta2**t)), spec.eps)
    elif spec.momentum > 0:
        K.rmsprop_momentum(p, g, state["square_avg"], state["momentum_buffer"], spec.lr, spec.alpha,
                           1.0 - spec.alpha, spec.eps, spec.momentum)
    else:
        K.rmsprop(p, g, state["square_avg"], spec.lr, spec.alpha, 1.0 - spec.alpha, spec.eps)


@pytest.mark.parametrize("dtype", DTYPES)
@given(spec=gst.optimizer_specs(), seed=gst.seeds)
def test_optimizer_kernels_match_reference_updates(spec, seed, dtype):
    """Four updates in place on one flat buffer equal reference.optim.step, state included."""
    rng = _rng(seed)
    params = {"w": rng.standard_normal(7)}
    ref_state = optim.init_state(spec, params)
    p = params["w"].astype(dtype)
    buffers = {name.rsplit(".", 1)[1]: np.zeros(7, dtype=dtype) for name in ref_state if name != "step"}
    ref_params = params
    p_id = id(p)
    for t in range(1, 5):
        grad = rng.standard_normal(7) * 10.0 ** rng.uniform(-3, 1)
        ref_params, ref_state = optim.step(spec, ref_params, {"w": grad}, ref_state)
        _run_kernel_optimizer(spec, p, grad.astype(dtype), buffers, t)
    assert id(p) == p_id and p.dtype == dtype
    tol = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-5, atol=2e-6)}[dtype]
    np.testing.assert_allclose(p, ref_params["w"], **tol)
    for suffix, buf in buffers.items():
        np.testing.assert_allclose(buf, ref_state[f"w.{suffix}"], **tol)


# ----- CUDA tracing without a GPU -----

def _fake_cupy_array(shape, dtype):
    """A cupy.ndarray header over memory that is never touched: enough for cupy.fuse to trace."""
    memory = cupy.cuda.UnownedMemory(0x1000, 8 * int(np.prod(shape)), None, device_id=0)
    return cupy.ndarray(shape, dtype, memptr=cupy.cuda.MemoryPointer(memory, 0))


def _trace(fused, args):
    """The (ElementwiseKernel, kwargs) that cupy.fuse's tracer builds for these arguments, as on a GPU."""
    fusion = pytest.importorskip("cupy._core.fusion")
    if not hasattr(fusion, "_FusionHistory") or not hasattr(fusion, "_thread_local"):
        pytest.skip("this CuPy version's fusion internals differ; run benchmarks/gpu_check.py on a GPU instead")
    history = fusion._FusionHistory()
    fusion._thread_local.history, fusion._thread_local.is_old_fusing = history, True
    try:
        return history.get_fusion(fused.func, args, fused.name)
    finally:
        fusion._thread_local.history, fusion._thread_local.is_old_fusing = None, False


def _trace_cases(dtype):
    kernels = kernels_for(cupy)
    mat = lambda: _fake_cupy_array((4, 3), dtype)  # noqa: E731
    col = lambda: _fake_cupy_array((4, 1), dtype)  # noqa: E731
    vec = lambda: _fake_cupy_array((3,), dtype)  # noqa: E731
    cases = [(f"bias_{n}", k, (mat(), vec(), 0.2), {0}) for n, k in kernels.bias_act.items()]
    cases += [(f"grad_{n}", k, (mat(), mat(), 0.2), {0}) for n, k in kernels.act_grad.items() if k is not None]
    cases += [
        ("logistic_loss", kernels.logistic_loss, (col(), col(), col(), col(), col()), {3, 4}),
        ("linear_loss", kernels.linear_loss, (col(), col(), col(), col()), {2, 3}),
        ("sgd", kernels.sgd, (mat(), mat(), 0.1), {0}),
        ("sgd_momentum", kernels.sgd_momentum, (mat(), mat(), mat(), 0.1, 0.9), {0, 2}),
        ("adam", kernels.adam, (mat(), mat(), mat(), mat(), 0.5, 0.5, 0.999, 0.001, 0.1, 0.3, 1e-8), {0, 2, 3}),
        ("rmsprop", kernels.rmsprop, (mat(), mat(), mat(), 0.1, 0.99, 0.01, 1e-8), {0, 2}),
        ("rmsprop_momentum", kernels.rmsprop_momentum, (mat(), mat(), mat(), mat(), 0.1, 0.99, 0.01, 1e-8, 0.5),
         {0, 2, 3}),
    ]
    return cases


@pytest.mark.skipif(cupy is None, reason="cupy is not installed")
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_kernel_traces_to_one_cuda_elementwise_kernel(dtype):
    """cupy.fuse turns each body into one ElementwiseKernel that writes exactly the intended arguments,
    in the arrays' own dtype (float32 stays float32: no double-precision temporaries)."""
    ctype = {np.float64: "double", np.float32: "float"}[dtype]
    for name, fused, args, written in _trace_cases(dtype):
        kernel, kwargs = _trace(fused, args)
        assert type(kernel).__name__ == "ElementwiseKernel", name
        assert kwargs == {}
        assert kernel.out_params == (), name  # results go into the arguments, nothing is allocated
        params = kernel.in_params
        array_params = [p for p, a in zip(params, args, strict=True) if isinstance(a, cupy.ndarray)]
        assert all(p.dtype == dtype for p in array_params), name
        assert {i for i, p in enumerate(params) if not p.is_const} == written, name
        temporaries = [line for line in kernel.operation.splitlines()
                       if line.startswith(("float v", "double v")) and line.endswith(";") and "=" not in line]
        assert temporaries and all(line.startswith(ctype + " ") for line in temporaries), (name, temporaries)
