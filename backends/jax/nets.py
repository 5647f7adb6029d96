"""G, D and the GAN losses as pure JAX functions of parameter pytrees.

Parameters are dicts in the interchange layout ("G.{i}.weight" of shape (n_in, n_out), "G.{i}.bias"),
one dict per network, so a layer computes x @ W + b exactly as reference/mlp.py writes it. Gradients
come from jax.grad; nothing here is written by hand except the formulas of the losses themselves.

Mixed precision: when `compute_dtype` is given (bfloat16), weights and inputs are cast to it for the
matrix products, while the master parameters (and therefore their gradients) keep their own dtype and
D's outputs are cast back to float32 before any loss is computed.

Remedies (reference/gan.py, reference/penalty.py): instance noise is added to what D sees (the noise
arrays come in already scaled); a gradient penalty is a function of the per-sample input gradient
g_n = dD(x_n)/dx_n, which is one vjp of D with an upstream gradient of ones (D has one output, so row n of
d(sum_n D(x_n))/dX is g_n). The penalty's own gradient with respect to D's parameters (a second
derivative: double backpropagation) is left to jax.grad of the whole objective.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reference.gan import GANSpec
from reference.mlp import MLPSpec
from reference.penalty import PenaltySpec


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


@jax.custom_jvp
def stable_sigmoid(y):
    """sigmoid(y) whose derivative is sigmoid(y) sigmoid(-y), exact in both tails (not s (1 - s))."""
    return jax.nn.sigmoid(y)


@stable_sigmoid.defjvp
def _stable_sigmoid_jvp(primals, tangents):
    (y,), (t,) = primals, tangents
    p = jax.nn.sigmoid(y)
    return p, t * p * jax.nn.sigmoid(-y)


def safe_norm(g):
    """||g_n|| per row (B, n) -> (B,), whose derivative is 0 (not NaN) at g_n = 0, as in the reference."""
    sq = jnp.sum(g * g, axis=1)
    nonzero = sq > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def with_noise(x, noise):
    """What D sees of a batch under instance noise (noise already scaled; None: none)."""
    return x if noise is None else x + noise


def with_labels(x, labels, num_classes: int):
    """A network's input: [x, onehot(labels)] (B, n + num_classes) for a conditional GAN (labels (B,) ints),
    x itself when labels is None. The one-hot columns have x's dtype and come AFTER x's (reference.gan)."""
    if labels is None:
        return x
    return jnp.concatenate([x, jax.nn.one_hot(labels, num_classes, dtype=x.dtype)], axis=1)


class Nets:
    """The GAN's pure functions for one spec and one numeric set-up (all static under jit)."""

    def __init__(self, spec: GANSpec, *, compute_dtype=None, precision=None, penalty: PenaltySpec | None = None):
        self.spec = spec
        self.penalty_spec = penalty
        self.compute_dtype = compute_dtype
        self.precision = precision

    # ----- forward passes -----

    def generate(self, g_params: dict, z, labels=None):
        z = with_labels(z, labels, self.spec.num_classes)
        x = mlp_apply(self.spec.generator, g_params, "G", z, compute_dtype=self.compute_dtype,
                      precision=self.precision)
        return x if self.compute_dtype is None else x.astype(jnp.float32)

    def discriminate(self, d_params: dict, x, labels=None):
        x = with_labels(x, labels, self.spec.num_classes)
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

    # ----- gradient penalties (reference/penalty.py), weighted -----

    def input_gradient(self, d_params: dict, x):
        """(g (B, n), D(x) (B, 1)): g_n = dD(x_n)/dx_n, by one vjp with dL/dy = 1."""
        y, vjp = jax.vjp(lambda inputs: self.discriminate(d_params, inputs), x)
        (g,) = vjp(jnp.ones_like(y))
        return g, y

    def penalty(self, d_params: dict, x_real, x_fake, mix=None):
        """The configured penalty's weighted value on the batches D sees; 0 without a penalty."""
        pen = self.penalty_spec
        if pen is None:
            return jnp.zeros((), dtype=jnp.result_type(*jax.tree.leaves(d_params)))
        if pen.kind == "r1":  # (w / 2) mean_real ||g||^2
            g, _ = self.input_gradient(d_params, x_real)
            return pen.weight * (0.5 * jnp.mean(jnp.sum(g * g, axis=1)))
        if pen.kind == "roth":  # (w / 2) (mean_real (1 - p)^2 ||g||^2 + mean_fake p^2 ||g||^2)
            g_real, y_real = self.input_gradient(d_params, x_real)
            g_fake, y_fake = self.input_gradient(d_params, x_fake)
            q = stable_sigmoid(-y_real[:, 0])  # 1 - p on the real batch
            p = stable_sigmoid(y_fake[:, 0])
            real = 0.5 * jnp.mean(q * q * jnp.sum(g_real * g_real, axis=1))
            fake = 0.5 * jnp.mean(p * p * jnp.sum(g_fake * g_fake, axis=1))
            return pen.weight * (real + fake)
        # wgan-gp: w mean (||g|| - 1)^2 at x_hat = mix x_real + (1 - mix) x_fake
        if mix is None:
            raise ValueError("the wgan-gp penalty needs the interpolation weights `mix` (B, 1)")
        g, _ = self.input_gradient(d_params, mix * x_real + (1.0 - mix) * x_fake)
        return pen.weight * jnp.mean((safe_norm(g) - 1.0) ** 2)

    # ----- the two objectives: each differentiated with respect to its own network only -----

    def d_objective(self, d_params: dict, g_params: dict, x_real, z, real_noise=None, fake_noise=None, mix=None,
                    real_labels=None, fake_labels=None):
        """D's loss (penalty included) as a function of D's parameters; G's samples are constants.

        real_noise / fake_noise: instance noise, already scaled (None: none); mix: WGAN-GP's weights.
        real_labels / fake_labels (B,) ints: a conditional GAN's classes (G generates for fake_labels; D judges
        each sample with its label); None for a plain GAN. The penalties ignore labels (refused by TrainConfig).
        Returns (loss, (real_out, fake_out, penalty)). Differentiate with respect to argument 0 only.
        """
        x_fake = with_noise(jax.lax.stop_gradient(self.generate(g_params, z, fake_labels)), fake_noise)
        x_real = with_noise(x_real, real_noise)
        real_out = self.discriminate(d_params, x_real, real_labels)
        fake_out = self.discriminate(d_params, x_fake, fake_labels)
        penalty = self.penalty(d_params, x_real, x_fake, mix)
        return self.d_loss(real_out, fake_out) + penalty, (real_out, fake_out, penalty)

    def g_objective(self, g_params: dict, d_params: dict, z, fake_noise=None, labels=None):
        """G's loss as a function of G's parameters; the gradient flows through D (and through the noise,
        a constant), whose parameters are not an argument of differentiation. A conditional G generates for
        `labels` and D judges with them (constants: only D's data columns pass gradient back to G).
        Returns (loss, fake_out)."""
        x_fake = with_noise(self.generate(g_params, z, labels), fake_noise)
        fake_out = self.discriminate(d_params, x_fake, labels)
        return self.g_loss(fake_out), fake_out

    def d_value_and_grad(self, d_params, g_params, x_real, z, real_noise=None, fake_noise=None, mix=None,
                         real_labels=None, fake_labels=None):
        return jax.value_and_grad(self.d_objective, argnums=0, has_aux=True)(
            d_params, g_params, x_real, z, real_noise, fake_noise, mix, real_labels, fake_labels)

    def g_value_and_grad(self, g_params, d_params, z, fake_noise=None, labels=None):
        return jax.value_and_grad(self.g_objective, argnums=0, has_aux=True)(g_params, d_params, z, fake_noise,
                                                                              labels)
