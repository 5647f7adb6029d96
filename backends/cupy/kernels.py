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

Instance noise and gradient penalties (the double backpropagation is laid out in backend.py, _Penalty):

    add_noise(x, n, sigma)               x <- x + sigma n                    D's view of a batch, in place
    noisy(out, x, n, sigma)              out <- x + sigma n                  (G's samples stay untouched)
    interpolate(out, real, fake, t)      out <- t real + (1 - t) fake        WGAN-GP's points, t per row
    times_deriv[name](a, u, y, slope)    a <- u * f'(h)                      the input-gradient chain
    second_order[name](ga, u, y, slope)  u <- ga * f'(h),  ga <- ga * u * f''(h)   (tanh and sigmoid)
    r1_weights(sq, coef, term, k)        term <- coef sq,  k <- 2 coef
    roth_weights(y, s, coef, sq, term, k, grad_y)
                                         c = sigmoid(s y)^2:  term <- coef c sq,  k <- 2 coef c,
                                         grad_y += coef sq dc/dy,  dc/dy = 2 s sigmoid(s y)^2 sigmoid(-s y)
    wgan_gp_weights(sq, coef, term, k)   term <- coef (||g|| - 1)^2,  k <- 2 coef (||g|| - 1) / ||g||  (0 at g = 0)

`second_order` is the step of the chain's reverse for a curved activation: from dP/da_i, u_{i+1} and
y = f(h_i) it gives dP/du_{i+1} (written over u_{i+1}, which is not needed again) and dP/dh_i (written over
dP/da_i). f'' is again written from y: tanh'' = -2 y (1 - y^2), sigmoid'' = y (1 - y) (1 - 2 y); the
piecewise-linear activations have f'' = 0 and use act_grad instead. The weight kernels give, per sample
n = one row, the penalty term, k_n with dP/dg_n = k_n g_n, and (Roth) dP/dy_n. s = -1 on real rows and +1
on fake rows makes Roth's two weights one formula: (1 - p)^2 = sigmoid(-y)^2 and p^2 = sigmoid(y)^2; the
sigmoid pair comes from one exp(-|s y|). ||g|| is taken from sq = ||g||^2 (one row sum on the device).
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

    # ----- instance noise and WGAN-GP's interpolation -----

    @_fuser(prefix + "add_noise")
    def add_noise(x, noise, sigma):
        x += sigma * noise

    @_fuser(prefix + "noisy")
    def noisy(out, x, noise, sigma):
        out[...] = x + sigma * noise

    @_fuser(prefix + "interpolate")
    def interpolate(out, real, fake, t):
        out[...] = t * real + (1.0 - t) * fake

    # ----- the input-gradient chain: a <- u * f'(h), from y = f(h) (identity: a is u itself) -----

    @_fuser(prefix + "times_deriv_relu")
    def times_deriv_relu(a, u, y, slope):
        a[...] = where(y > 0, u, 0.0)

    @_fuser(prefix + "times_deriv_leaky_relu")
    def times_deriv_leaky_relu(a, u, y, slope):
        a[...] = where(y > 0, u, slope * u)

    @_fuser(prefix + "times_deriv_tanh")
    def times_deriv_tanh(a, u, y, slope):
        a[...] = u * (1.0 - y * y)

    @_fuser(prefix + "times_deriv_sigmoid")
    def times_deriv_sigmoid(a, u, y, slope):
        a[...] = u * (y * (1.0 - y))

    # ----- the chain's reverse through a curved activation: dP/du_{i+1} over u, dP/dh_i over dP/da -----

    @_fuser(prefix + "second_order_tanh")
    def second_order_tanh(ga, u, y, slope):
        d1 = 1.0 - y * y
        up = ga * d1  # dP/du_{i+1} = dP/da_i * f'(h_i)
        gh = ga * u * (-2.0 * y * d1)  # dP/dh_i = dP/da_i * u_{i+1} * f''(h_i)
        u[...] = up
        ga[...] = gh

    @_fuser(prefix + "second_order_sigmoid")
    def second_order_sigmoid(ga, u, y, slope):
        d1 = y * (1.0 - y)
        up = ga * d1
        gh = ga * u * (d1 * (1.0 - 2.0 * y))
        u[...] = up
        ga[...] = gh

    # ----- per-sample penalty weights: the term, k with dP/dg = k g, and (Roth) dP/dy -----

    @_fuser(prefix + "r1_weights")
    def r1_weights(sq, coef, term, k):
        term[...] = coef * sq
        k[...] = coef * (0.0 * sq + 2.0)  # a constant, written per row like the other kinds (and kept an array
        # expression: under cupy.fuse, an expression of scalars alone is traced in float16)

    @_fuser(prefix + "roth_weights")
    def roth_weights(y, s, coef, sq, term, k, grad_y):
        v = s * y
        e = exp(-absolute(v))  # in (0, 1]
        p = where(v >= 0, 1.0, e) / (1.0 + e)  # sigmoid(s y)
        q = where(v >= 0, e, 1.0) / (1.0 + e)  # sigmoid(-s y) = 1 - p, exact in both tails
        c = p * p
        term[...] = coef * c * sq
        k[...] = 2.0 * coef * c
        grad_y += coef * sq * (2.0 * s * c * q)

    @_fuser(prefix + "wgan_gp_weights")
    def wgan_gp_weights(sq, coef, term, k):
        norm = sqrt(sq)
        positive = norm > 0
        term[...] = coef * (norm - 1.0) * (norm - 1.0)
        k[...] = where(positive, coef * (2.0 * (norm - 1.0)) / where(positive, norm, 1.0), 0.0)

    return SimpleNamespace(
        xp=xp,
        bias_act={"identity": bias_identity, "relu": bias_relu, "leaky_relu": bias_leaky_relu,
                  "tanh": bias_tanh, "sigmoid": bias_sigmoid},
        act_grad={"identity": None, "relu": grad_relu, "leaky_relu": grad_leaky_relu,
                  "tanh": grad_tanh, "sigmoid": grad_sigmoid},  # identity: f' = 1, nothing to do
        logistic_loss=logistic_loss,
        linear_loss=linear_loss,
        sgd=sgd, sgd_momentum=sgd_momentum, adam=adam, rmsprop=rmsprop, rmsprop_momentum=rmsprop_momentum,
        add_noise=add_noise, noisy=noisy, interpolate=interpolate,
        times_deriv={"identity": None, "relu": times_deriv_relu, "leaky_relu": times_deriv_leaky_relu,
                     "tanh": times_deriv_tanh, "sigmoid": times_deriv_sigmoid},  # identity: a = u, no kernel
        second_order={"identity": None, "relu": None, "leaky_relu": None,  # f'' = 0: act_grad does it
                      "tanh": second_order_tanh, "sigmoid": second_order_sigmoid},
        r1_weights=r1_weights, roth_weights=roth_weights, wgan_gp_weights=wgan_gp_weights,
    )


@functools.cache
def kernels_for(xp) -> SimpleNamespace:
    """The kernel set for an array module (built once per module and reused, as cupy.fuse recommends)."""
    if xp is not np and (cupy is None or xp is not cupy):
        raise ValueError(f"no kernels for array module {getattr(xp, '__name__', xp)!r}; use numpy or cupy")
    return _build(xp)
