"""G, D and the GAN losses as pure JAX functions of parameter pytrees.

Parameters are dicts in the interchange layout ("G.{i}.weight" of shape (n_in, n_out), "G.{i}.bias"),
one dict per network, so a layer computes x @ W + b exactly as reference/mlp.py writes it. Gradients
come from jax.grad; nothing here is written by hand except the formulas of the losses themselves.

Mixed precision: when `compute_dtype` is given (bfloat16), weights and inputs are cast to it for the
matrix products, while the master parameters (and therefore their gradients) keep their own dtype and
D's outputs are cast back to float32 before any loss is computed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reference.gan import GANSpec
from reference.mlp import MLPSpec


def activate(name: str, slope: float, h):
    """The reference's activations. relu and leaky_relu take the left-hand derivative at h = 0."""
    if name == "identity":
        return h
    if name == "relu":
        return jax.nn.relu(h)  # relu'(0) = 0, as in the reference
    if name == "leaky_relu":
        # Not jax.nn.leaky_relu: it selects on h >= 0, which makes the derivative at 0 equal 1, not slope.
        return jnp.where(h > 0, h, slope * h)
    if name == "tanh":
        return jnp.tanh(h)
    if name == "sigmoid":
        return jax.nn.sigmoid(h)
    raise ValueError(f"unknown activation {name!r}")


def mlp_apply(spec: MLPSpec, params: dict, prefix: str, x, *, compute_dtype=None, precision=None):
    """Run one MLP on x (B, in_size) -> (B, out_size)."""
    last = spec.num_layers - 1
    for i in range(spec.num_layers):
        w, b = params[f"{prefix}.{i}.weight"], params[f"{prefix}.{i}.bias"]
        if compute_dtype is not None:
            w, b, x = w.astype(compute_dtype), b.astype(compute_dtype), x.astype(compute_dtype)
        h = jnp.matmul(x, w, precision=precision) + b  # (B, n_in) @ (n_in, n_out) + (n_out,)
        name = spec.output_activation if i == last else spec.hidden_activation
        x = activate(name, spec.leaky_slope, h)
    return x


class Nets:
    """The GAN's pure functions for one spec and one numeric set-up (all static under jit)."""

    def __init__(self, spec: GANSpec, *, compute_dtype=None, precision=None):
        self.spec = spec
        self.compute_dtype = compute_dtype
        self.precision = precision

    # ----- forward passes -----

    def generate(self, g_params: dict, z):
        x = mlp_apply(self.spec.generator, g_params, "G", z, compute_dtype=self.compute_dtype,
                      precision=self.precision)
        return x if self.compute_dtype is None else x.astype(jnp.float32)

    def discriminate(self, d_params: dict, x):
        out = mlp_apply(self.spec.discriminator, d_params, "D", x, compute_dtype=self.compute_dtype,
                        precision=self.precision)
        return out if self.compute_dtype is None else out.astype(jnp.float32)

    # ----- losses on D's outputs (logits, or critic scores for WGAN); all means over the batch -----

    def d_loss(self, real_out, fake_out):
        """minimax/non-saturating: mean softplus(-l_real) + mean softplus(l_fake); WGAN: E[C(fake)] - E[C(real)]."""
        if self.spec.loss == "wasserstein":
            return jnp.mean(fake_out) - jnp.mean(real_out)
        return jnp.mean(jax.nn.softplus(-real_out)) + jnp.mean(jax.nn.softplus(fake_out))

    def g_loss(self, fake_out):
        """minimax: -mean softplus(l); non-saturating: mean softplus(-l); WGAN: -E[C(fake)]."""
        if self.spec.loss == "minimax":
            return -jnp.mean(jax.nn.softplus(fake_out))
        if self.spec.loss == "nonsaturating":
            return jnp.mean(jax.nn.softplus(-fake_out))
        return -jnp.mean(fake_out)

    # ----- the two objectives: each differentiated with respect to its own network only -----

    def d_objective(self, d_params: dict, g_params: dict, x_real, z):
        """D's loss as a function of D's parameters; G's samples are constants (stop_gradient).

        Returns (loss, (real_out, fake_out)). Differentiate with respect to argument 0 only: G is frozen.
        """
        x_fake = jax.lax.stop_gradient(self.generate(g_params, z))
        real_out = self.discriminate(d_params, x_real)
        fake_out = self.discriminate(d_params, x_fake)
        return self.d_loss(real_out, fake_out), (real_out, fake_out)

    def g_objective(self, g_params: dict, d_params: dict, z):
        """G's loss as a function of G's parameters; the gradient flows through D, whose parameters are
        not an argument of differentiation (D is frozen). Returns (loss, fake_out)."""
        fake_out = self.discriminate(d_params, self.generate(g_params, z))
        return self.g_loss(fake_out), fake_out

    def d_value_and_grad(self, d_params, g_params, x_real, z):
        return jax.value_and_grad(self.d_objective, argnums=0, has_aux=True)(d_params, g_params, x_real, z)

    def g_value_and_grad(self, g_params, d_params, z):
        return jax.value_and_grad(self.g_objective, argnums=0, has_aux=True)(g_params, d_params, z)
