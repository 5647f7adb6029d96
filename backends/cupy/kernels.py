"""The CuPy backend's fused elementwise kernels, one body for the GPU and the CPU.

Every kernel is a plain Python function over arrays, written against an array module `xp`, and wrapped
in `cupy.fuse`. Called with CuPy arrays, `cupy.fuse` traces the body once per argument signature into a
single CUDA elementwise kernel (one pass over memory, no temporaries). Called with NumPy arrays,
`cupy.fuse` runs the very same body as ordinary NumPy code. So the code the CPU tests check is the code
the GPU compiles; there is no separate GPU-only kernel with a hand-written CPU fallback to drift apart.

Kernels write their results into arrays they are given (`out[...] = ...`, `p -= ...`), so the backend
preallocates every activation, gradient and state buffer once and reuses it across steps. Inside
`cupy.fuse`, assignment to an argument marks it as an output of the generated kernel.

    bias_act[name](h, b, slope)          h <- f(h + b)               bias and activation, in place
    act_grad[name](g, y, slope)          g <- g * f'(h), from y=f(h) the gradient through the activation
    logistic_loss(l, s, c, term, grad)   term <- c softplus(s l),  grad <- c s sigmoid(s l)
    linear_loss(l, sc, term, grad)       term <- sc l,             grad <- sc         (Wasserstein)
    sgd, sgd_momentum, adam, rmsprop, rmsprop_momentum (p, g, state..., scalars)   one update, in place

f'(h) is computed from the activation's output y = f(h), which the forward pass keeps anyway:
relu' = [y > 0], leaky_relu' = 1 if y > 0 else slope, tanh' = 1 - y^2, sigmoid' = y (1 - y).
("y > 0 iff h > 0" holds for relu and for leaky_relu with slope >= 0, which MLPSpec enforces.)

The logistic loss covers every logit loss of the project with a sign s = +-1 and a coefficient c per row:

    D, real rows:   softplus(-l) / B_real      s = -1, c = 1 / B_real
    D, fake rows:   softplus(l) / B_fake       s = +1, c = 1 / B_fake
    G minimax:      -softplus(l) / B           s = +1, c = -1 / B
    G non-sat.:     softplus(-l) / B           s = -1, c = 1 / B

and d/dl [c softplus(s l)] = c s sigmoid(s l). With u = s l and e = exp(-|u|) (never overflows),
softplus(u) = max(u, 0) + log1p(e) and sigmoid(u) = (1 if u >= 0 else e) / (1 + e): one exp and one
log1p per element give both the loss and its gradient, finite for any finite logit.

The optimizer kernels take their step-dependent scalars (Adam's bias corrections) from the host, so the
step counter never has to be read back from the device.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

try:  # CuPy is optional: without it the backend runs on NumPy and the kernels are plain functions
    import cupy
except ImportError:  # pragma: no cover - exercised only where cupy is not installed
    cupy = None


def _fuser(name: str):
    """cupy.fuse(kernel_name=name) when CuPy is importable, else the identity decorator."""
    if cupy is None:
        return lambda fn: fn
    return cupy.fuse(kernel_name=name)


def _build(xp) -> SimpleNamespace:
    """Every kernel, with its body bound to the array module xp (numpy or cupy)."""
    maximum, where, tanh, exp, log1p, sqrt, absolute = (xp.maximum, xp.where, xp.tanh, xp.exp, xp.log1p,
                                                        xp.sqrt, xp.absolute)
    prefix = "ganspec_"

    # ----- dense layer epilogue: bias + activation, in place on the GEMM's output -----

    @_fuser(prefix + "bias_identity")
    def bias_identity(h, b, slope):
        h += b

    @_fuser(prefix + "bias_relu")
    def bias_relu(h, b, slope):
        h[...] = maximum(h + b, 0.0)

    @_fuser(prefix + "bias_leaky_relu")
    def bias_leaky_relu(h, b, slope):
        t = h + b
        h[...] = where(t > 0, t, slope * t)

    @_fuser(prefix + "bias_tanh")
    def bias_tanh(h, b, slope):
        h[...] = tanh(h + b)

    @_fuser(prefix + "bias_sigmoid")
    def bias_sigmoid(h, b, slope):
        t = h + b
        e = exp(-absolute(t))  # in (0, 1]: never overflows, and tiny sigmoids keep their relative accuracy
        h[...] = where(t >= 0, 1.0, e) / (1.0 + e)

    # ----- backward through an activation: g <- g * f'(h), written from y = f(h) -----

    @_fuser(prefix + "grad_relu")
    def grad_relu(g, y, slope):
        g[...] = where(y > 0, g, 0.0)

    @_fuser(prefix + "grad_leaky_relu")
    def grad_leaky_relu(g, y, slope):
        g[...] = where(y > 0, g, slope * g)

    @_fuser(prefix + "grad_tanh")
    def grad_tanh(g, y, slope):
        g *= 1.0 - y * y

    @_fuser(prefix + "grad_sigmoid")
    def grad_sigmoid(g, y, slope):
        g *= y * (1.0 - y)

    # ----- losses on D's outputs: per-row loss terms and dL/dl in one pass -----

    @_fuser(prefix + "logistic_loss")
    def logistic_loss(logit, s, c, term, grad):
        u = s * logit
        e = exp(-absolute(u))  # in (0, 1]: exp never overflows
        term[...] = c * (maximum(u, 0.0) + log1p(e))  # c softplus(u)
        grad[...] = c * s * (where(u >= 0, 1.0, e) / (1.0 + e))  # c s sigmoid(u)

    @_fuser(prefix + "linear_loss")
    def linear_loss(logit, sc, term, grad):
        term[...] = sc * logit
        grad[...] = sc

    # ----- optimizers: one fused update of a parameter buffer and its state buffers -----

    @_fuser(prefix + "sgd")
    def sgd(p, g, lr):
        p -= lr * g

    @_fuser(prefix + "sgd_momentum")
    def sgd_momentum(p, g, buf, lr, momentum):
        buf[...] = momentum * buf + g
        p -= lr * buf

    @_fuser(prefix + "adam")
    def adam(p, g, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bias2_sqrt, eps):
        m[...] = beta1 * m + one_minus_beta1 * g
        v[...] = beta2 * v + one_minus_beta2 * g * g
        p -= step_size * m / (sqrt(v) / bias2_sqrt + eps)

    @_fuser(prefix + "rmsprop")
    def rmsprop(p, g, s, lr, alpha, one_minus_alpha, eps):
        s[...] = alpha * s + one_minus_alpha * g * g
        p -= lr * (g / (sqrt(s) + eps))

    @_fuser(prefix + "rmsprop_momentum")
    def rmsprop_momentum(p, g, s, buf, lr, alpha, one_minus_alpha, eps, momentum):
        s[...] = alpha * s + one_minus_alpha * g * g
        buf[...] = momentum * buf + g / (sqrt(s) + eps)
        p -= lr * buf

    return SimpleNamespace(
        xp=xp,
        bias_act={"identity": bias_identity, "relu": bias_relu, "leaky_relu": bias_leaky_relu,
                  "tanh": bias_tanh, "sigmoid": bias_sigmoid},
        act_grad={"identity": None, "relu": grad_relu, "leaky_relu": grad_leaky_relu,
                  "tanh": grad_tanh, "sigmoid": grad_sigmoid},  # identity: f' = 1, nothing to do
        logistic_loss=logistic_loss,
        linear_loss=linear_loss,
        sgd=sgd, sgd_momentum=sgd_momentum, adam=adam, rmsprop=rmsprop, rmsprop_momentum=rmsprop_momentum,
    )


@functools.cache
def kernels_for(xp) -> SimpleNamespace:
    """The kernel set for an array module (built once per module and reused, as cupy.fuse recommends)."""
    if xp is not np and (cupy is None or xp is not cupy):
        raise ValueError(f"no kernels for array module {getattr(xp, '__name__', xp)!r}; use numpy or cupy")
    return _build(xp)
