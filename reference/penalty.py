"""Gradient penalties: regularisers on how steeply D changes with its input.

A penalty is a function of g_n = dD(x_n)/dx_n, the gradient of D's output (a logit, or a critic score)
with respect to its input sample x_n. Three are implemented, each added to D's loss in every D step:

    "r1"      Mescheder et al. 2018, on the real batch:
                  P = (w / 2) * mean_n ||g_n||^2
    "roth"    Roth et al. 2017 ("Stabilizing training of GANs through regularization"), on both batches,
              each sample weighted by how wrong D is about it (p = sigmoid(logit)):
                  P = (w / 2) * (mean_real (1 - p_n)^2 ||g_n||^2 + mean_fake p_n^2 ||g_n||^2)
    "wgan-gp" Gulrajani et al. 2017, on points between the two batches, x_hat = t x_real + (1 - t) x_fake
              with t ~ U(0, 1) drawn per sample (an input, like all randomness here):
                  P = w * mean_n (||g_n|| - 1)^2

The penalty depends on a gradient of D, so its own gradient with respect to D's parameters is a second
derivative: we backpropagate through the backward pass ("double backpropagation"). Because D has a single
output, the rows of dSum_n D(x_n)/dX are exactly the per-sample gradients g_n, so one ordinary backward
pass with dL/dy = 1 computes all of them:

    u_L = 1                          (B, 1)       the upstream gradient at D's output
    a_i = u_{i+1} * f_i'(h_i)        (B, n_out)   for i = L-1 ... 0
    u_i = a_i @ W_i^T                (B, n_in)    u_0 = g, one row per sample

`input_gradient` runs it; `input_gradient_backward` takes dP/dg and differentiates that chain. Every
quantity in it depends on the parameters, directly (W_i) or through the forward pass (h_i):

    from u_i = a_i @ W_i^T:          dP/da_i = dP/du_i @ W_i           dP/dW_i += dP/du_i^T @ a_i
    from a_i = u_{i+1} * f'(h_i):    dP/du_{i+1} = dP/da_i * f'(h_i)   dP/dh_i += dP/da_i * u_{i+1} * f''(h_i)

That first sweep runs i = 0 ... L-1 (the chain's reverse). The dP/dh_i it leaves are then carried down
through the forward pass by an ordinary backward sweep (mlp.py's rules), which adds x_i^T @ dP/dh_i to each
weight, sums dP/dh_i over the batch for each bias, and ends with dP/dx. A penalty that also depends on
D's output (Roth's weights p_n) enters that second sweep as dP/dy.
"""

from dataclasses import dataclass

import numpy as np

from . import mlp
from .activations import sigmoid

PENALTIES = ("r1", "roth", "wgan-gp")


@dataclass(frozen=True)
class PenaltySpec:
    """Which gradient penalty D's loss gets, and its weight (gamma in R1 and Roth, lambda in WGAN-GP)."""

    kind: str = "r1"
    weight: float = 1.0

    def __post_init__(self):
        if self.kind not in PENALTIES:
            raise ValueError(f"unknown penalty {self.kind!r}; choose one of {', '.join(PENALTIES)}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float | np.floating) or not (np.isfinite(w) and w >= 0):
            raise ValueError(f"penalty weight must be a finite number >= 0, got {w!r}")
        object.__setattr__(self, "weight", float(w))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "weight": self.weight}


# ----- the per-sample input gradient, and backpropagation through it -----

def input_gradient(spec: mlp.MLPSpec, params: dict, prefix: str, x):
    """g = dD(x_n)/dx_n for every row of x (D must have one output). Returns (g (B, in_size), y, cache)."""
    if spec.out_size != 1:
        raise ValueError(f"input_gradient needs a network with one output, got out_size {spec.out_size}")
    y, forward_cache = mlp.forward(spec, params, prefix, x)  # y: (B, 1)
    u = np.ones_like(y)  # u_L = dy/dy, (B, 1)
    chain = [None] * spec.num_layers  # chain[i] = (u_{i+1}, a_i)
    for i in reversed(range(spec.num_layers)):
        _, h = forward_cache[i]
        a = u * spec.activation(i).derivative(h)  # a_i = u_{i+1} * f'(h_i), (B, n_out)
        chain[i] = (u, a)
        u = a @ params[f"{prefix}.{i}.weight"].T  # u_i = a_i @ W_i^T, (B, n_out) @ (n_out, n_in) -> (B, n_in)
    return u, y, (forward_cache, chain)


def input_gradient_backward(spec: mlp.MLPSpec, params: dict, prefix: str, cache, grad_g, grad_y=None):
    """Given dP/dg (B, in_size) (and optionally dP/dy (B, 1)), return (dP/dx (B, in_size), dP/dparams)."""
    forward_cache, chain = cache
    grads = {}
    grad_h = [None] * spec.num_layers  # dP/dh_i contributed by the chain
    grad_u = grad_g  # dP/du_0, (B, n_in of layer 0)
    for i in range(spec.num_layers):  # the chain's reverse: from the input end to the output end
        _, h = forward_cache[i]
        u_above, a = chain[i]  # u_{i+1}: (B, n_out), a_i: (B, n_out)
        act = spec.activation(i)
        W = params[f"{prefix}.{i}.weight"]  # (n_in, n_out)
        grad_a = grad_u @ W  # dP/da_i, (B, n_in) @ (n_in, n_out) -> (B, n_out)
        grads[f"{prefix}.{i}.weight"] = grad_u.T @ a  # (n_in, B) @ (B, n_out) -> (n_in, n_out)
        grad_h[i] = grad_a * u_above * act.second_derivative(h)  # (B, n_out)
        grad_u = grad_a * act.derivative(h)  # dP/du_{i+1}, (B, n_out)
    # grad_u is now dP/du_L; u_L = 1 is a constant, so it stops here.
    grad_x = np.zeros_like(forward_cache[-1][1]) if grad_y is None else grad_y  # dP/dy, (B, 1)
    for i in reversed(range(spec.num_layers)):  # ordinary backprop through the forward pass
        x, h = forward_cache[i]
        total = grad_x * spec.activation(i).derivative(h) + grad_h[i]  # dP/dh_i, (B, n_out)
        grads[f"{prefix}.{i}.weight"] = grads[f"{prefix}.{i}.weight"] + x.T @ total  # (n_in, n_out)
        grads[f"{prefix}.{i}.bias"] = total.sum(axis=0)  # (n_out,)
        grad_x = total @ params[f"{prefix}.{i}.weight"].T  # dP/dx_i, (B, n_in)
    return grad_x, {name: grads[name] for name in mlp.param_shapes(spec, prefix)}


# ----- the penalties: value and gradient with respect to D's parameters -----

def _squared_norms(g):
    return np.sum(g * g, axis=1, keepdims=True)  # ||g_n||^2, (B, 1)


def _weighted_norm_penalty(d_spec: mlp.MLPSpec, params, x, weight_fn):
    """(1/2) mean_n c_n ||g_n||^2 with (c_n, dc_n/dy_n) = weight_fn(y) depending on D's output y, and its
    gradients with respect to D's parameters."""
    g, y, cache = input_gradient(d_spec, params, "D", x)  # g: (B, n), y: (B, 1)
    c, dc_dy = weight_fn(y)  # (B, 1) each
    sq = _squared_norms(g)  # (B, 1)
    b = len(x)
    value = 0.5 * float(np.mean(c * sq))
    # d/dg_n of (1/2B) c_n ||g_n||^2 = c_n g_n / B;  d/dy_n = ||g_n||^2 dc_n/dy_n / (2B)
    _, grads = input_gradient_backward(d_spec, params, "D", cache, c * g / b, sq * dc_dy / (2 * b))
    return value, grads


def r1(spec, params: dict, x_real):
    """(1/2) mean ||g_n||^2 over the real batch (multiply by the weight outside). Returns (value, grads)."""
    return _weighted_norm_penalty(spec.discriminator, params, x_real, lambda y: (np.ones_like(y), np.zeros_like(y)))


def roth(spec, params: dict, x_real, x_fake):
    """Roth et al.'s regulariser without its weight: each sample's ||g_n||^2 weighted by D's error on it.

    real: c = (1 - p)^2, dc/dlogit = -2 (1 - p) p (1 - p)   fake: c = p^2, dc/dlogit = 2 p p (1 - p)
    (p = sigmoid(logit), dp/dlogit = p (1 - p); 1 - p is computed as sigmoid(-logit), exact in both tails)."""
    def real_weight(y):
        p, q = sigmoid(y), sigmoid(-y)  # p and 1 - p
        return q * q, -2.0 * q * q * p

    def fake_weight(y):
        p, q = sigmoid(y), sigmoid(-y)
        return p * p, 2.0 * p * p * q

    value_real, grads_real = _weighted_norm_penalty(spec.discriminator, params, x_real, real_weight)
    value_fake, grads_fake = _weighted_norm_penalty(spec.discriminator, params, x_fake, fake_weight)
    return value_real + value_fake, {k: grads_real[k] + grads_fake[k] for k in grads_real}


def wgan_gp(spec, params: dict, x_real, x_fake, mix):
    """mean (||g_n|| - 1)^2 at x_hat = mix x_real + (1 - mix) x_fake, mix (B, 1) in [0, 1].

    d/dg_n = 2 (||g_n|| - 1) g_n / ||g_n|| / B; at g_n = 0 the norm has no derivative and 0 is used
    (as torch's norm backward does)."""
    if x_real.shape != x_fake.shape:
        raise ValueError(f"wgan-gp interpolates real and fake samples pairwise: the batches must have the same "
                         f"shape, got {x_real.shape} and {x_fake.shape}")
    x_hat = mix * x_real + (1.0 - mix) * x_fake  # (B, n)
    g, _, cache = input_gradient(spec.discriminator, params, "D", x_hat)  # (B, n)
    norm = np.sqrt(_squared_norms(g))  # (B, 1)
    b = len(x_hat)
    value = float(np.mean((norm - 1.0) ** 2))
    safe = np.where(norm > 0, norm, 1.0)
    grad_g = np.where(norm > 0, 2.0 * (norm - 1.0) / safe, 0.0) * g / b  # (B, n)
    _, grads = input_gradient_backward(spec.discriminator, params, "D", cache, grad_g)
    return value, grads


def penalty_and_grads(spec, penalty: PenaltySpec, params: dict, x_real, x_fake, mix=None):
    """The weighted penalty's value and its gradient with respect to D's parameters."""
    if penalty.kind == "r1":
        value, grads = r1(spec, params, x_real)
    elif penalty.kind == "roth":
        value, grads = roth(spec, params, x_real, x_fake)
    else:
        if mix is None:
            raise ValueError("the wgan-gp penalty needs the interpolation weights `mix` (B, 1)")
        value, grads = wgan_gp(spec, params, x_real, x_fake, mix)
    w = penalty.weight
    return w * value, {k: w * v for k, v in grads.items()}
