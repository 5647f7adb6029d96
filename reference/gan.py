"""The GAN: a generator G and a discriminator D, and the two training procedures of the primer.

    G: z (B, z_size) -> x_fake (B, data_size)          an MLP
    D: x (B, data_size) -> logit (B, 1)                an MLP; D(x) = sigmoid(logit) (WGAN: a raw score)

All parameters live in one dict: "G.*" entries belong to the generator and "D.*" to the discriminator
(layout in mlp.py). A gradient dict holds only the entries of the network being trained, and an update
only touches the entries it has gradients for. That is how "G is frozen while D trains, and D is frozen
while G trains" is built in, not bolted on: the frozen network's arrays are returned as the very same
objects, bitwise unchanged.

The D step (primer: "the discriminator"): G's samples are constants. D sees a real batch (label 1) and a
fake batch (label 0), and only D's loss is backpropagated, only into D.

The G step (primer: "the generator"): the loss is computed on D's output, so its gradient flows back
through D (whose weights do not change) to D's input x_fake = G(z), and from there through G into G's
weights.

A conditional GAN (Mirza & Osindero 2014; spec.num_classes > 0) gives both networks a class label y as a
one-hot vector appended to their input: G reads [z, onehot(y)], D reads [x, onehot(y)]. D then judges
whether x is a real example *of class y*, and G learns P(x | y).

Two remedies for failure to converge (primer, "common problems") are options of the D and G steps:
instance noise (Arjovsky & Bottou 2017), Gaussian noise added to every sample D sees, real or fake, handed
in as arrays like all randomness; and a gradient penalty on D (penalty.py), added to D's loss.
"""

from dataclasses import dataclass

import numpy as np

from . import losses, mlp, optim, penalty


@dataclass(frozen=True)
class GANSpec:
    """A GAN's architecture and loss. D must output one number.

    num_classes = 0: an ordinary GAN; generator.in_size is z's size and discriminator.in_size the data's.
    num_classes = C > 0: a conditional GAN; both networks read C more inputs, the one-hot label.
    """

    generator: mlp.MLPSpec
    discriminator: mlp.MLPSpec
    loss: str = "nonsaturating"
    num_classes: int = 0

    def __post_init__(self):
        losses.check_loss(self.loss)
        c = self.num_classes
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 0 or c == 1:
            raise ValueError(f"num_classes must be 0 (unconditional) or an int >= 2, got {c!r}")
        if self.discriminator.out_size != 1:
            raise ValueError(f"the discriminator must output 1 value, not {self.discriminator.out_size}")
        for who, net in (("generator", self.generator), ("discriminator", self.discriminator)):
            if net.in_size <= c:
                raise ValueError(f"the {who} reads {net.in_size} inputs, which must be more than the "
                                 f"{c} one-hot label inputs")
        if self.generator.out_size != self.data_size:
            raise ValueError(f"the generator makes samples of size {self.generator.out_size} but the "
                             f"discriminator reads samples of size {self.data_size}"
                             + (f" (plus {c} label inputs)" if c else ""))

    @property
    def z_size(self) -> int:
        return self.generator.in_size - self.num_classes

    @property
    def data_size(self) -> int:
        return self.discriminator.in_size - self.num_classes

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {**mlp.param_shapes(self.generator, "G"), **mlp.param_shapes(self.discriminator, "D")}

    def to_dict(self) -> dict:
        return {"generator": self.generator.to_dict(), "discriminator": self.discriminator.to_dict(),
                "loss": self.loss, "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict) -> "GANSpec":
        return cls(mlp.MLPSpec.from_dict(d["generator"]), mlp.MLPSpec.from_dict(d["discriminator"]), d["loss"],
                   d.get("num_classes", 0))


def init_params(spec: GANSpec, seed: int) -> dict[str, np.ndarray]:
    """Initial parameters from a seed: G's from the stream SeedSequence([seed, 0]), D's from [seed, 1]."""
    g_rng = np.random.default_rng([seed, 0])
    d_rng = np.random.default_rng([seed, 1])
    return {**mlp.init_params(spec.generator, "G", g_rng), **mlp.init_params(spec.discriminator, "D", d_rng)}


def check_params(spec: GANSpec, params: dict):
    """Raise a clear error unless params has exactly the spec's names, shapes and a float dtype."""
    expected = spec.param_shapes()
    missing, extra = expected.keys() - params.keys(), params.keys() - expected.keys()
    if missing or extra:
        raise ValueError(f"parameters do not match the spec: missing {sorted(missing)}, unexpected {sorted(extra)}")
    for name, shape in expected.items():
        value = params[name]
        if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
            raise TypeError(f"parameter {name} must be a floating-point numpy array")
        if value.shape != shape:
            raise ValueError(f"parameter {name} has shape {value.shape}, expected {shape}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"parameter {name} contains NaN or Inf")


def network(params: dict, prefix: str) -> dict:
    """The entries of one network ("G" or "D")."""
    return {k: v for k, v in params.items() if k.startswith(prefix + ".")}


# ----- Labels (conditional GANs) -----

def check_labels(labels, batch: int, num_classes: int, what: str):
    """Raise a clear error unless labels is an integer array of shape (batch,) with values in [0, num_classes)."""
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{what} must be an integer numpy array of class labels")
    if labels.shape != (batch,):
        raise ValueError(f"{what} must have shape ({batch},), one label per sample, got {labels.shape}")
    if batch and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} must lie in [0, {num_classes}), got values from {labels.min()} to {labels.max()}")


def with_labels(spec: GANSpec, x, labels, what: str):
    """A network's input: [x, onehot(labels)] (B, n + num_classes) for a conditional GAN, x itself otherwise."""
    if spec.num_classes == 0:
        if labels is not None:
            raise ValueError(f"{what}: labels were given to an unconditional GAN (num_classes = 0)")
        return x
    if labels is None:
        raise ValueError(f"{what}: a conditional GAN (num_classes = {spec.num_classes}) needs class labels")
    check_labels(labels, len(x), spec.num_classes, what)
    one_hot = np.eye(spec.num_classes, dtype=x.dtype)[labels]  # (B, num_classes)
    return np.concatenate([x, one_hot], axis=1)  # (B, n + num_classes)


# ----- Forward passes -----

def generate(spec: GANSpec, params: dict, z, labels=None):
    """x_fake = G(z) (conditional: G([z, onehot(labels)])): (B, z_size) -> (B, data_size)."""
    mlp.check_input(z, spec.z_size, "z")
    return mlp.forward(spec.generator, params, "G", with_labels(spec, z, labels, "generate"))[0]


def discriminate(spec: GANSpec, params: dict, x, labels=None):
    """D's logits (or critic scores), conditional: of [x, onehot(labels)]: (B, data_size) -> (B, 1)."""
    mlp.check_input(x, spec.data_size, "x")
    return mlp.forward(spec.discriminator, params, "D", with_labels(spec, x, labels, "discriminate"))[0]


# ----- The D step and the G step: loss and gradients -----

@dataclass
class StepStats:
    """What one D or G step saw: D's outputs on the real and fake batches (real_out is None in a G step)."""

    loss: float  # includes the gradient penalty, if any: the gradient is that of exactly this loss
    real_out: np.ndarray | None
    fake_out: np.ndarray
    grad_norm: float  # the L2 norm of the whole gradient of the network being trained
    penalty: float = 0.0  # the (weighted) gradient penalty's share of `loss`


def global_norm(grads: dict) -> float:
    """sqrt(sum of squares of every gradient entry)."""
    return float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))


def _with_noise(x, noise):
    """x + noise: D's view of a batch under instance noise (noise is already scaled, or None for none)."""
    return x if noise is None else x + noise  # (B, data_size)


def d_loss_and_grads(spec: GANSpec, params: dict, x_real, z, *, real_noise=None, fake_noise=None,
                     penalty_spec: penalty.PenaltySpec | None = None, mix=None, real_labels=None, fake_labels=None):
    """D's loss on a real batch and on G(z), and its gradient with respect to D's parameters only.

    x_fake = G(z) is computed and then treated as a constant: nothing is backpropagated into G.
    real_noise / fake_noise (B, data_size): instance noise added to what D sees. penalty_spec: a gradient
    penalty added to the loss, evaluated on the (noisy) batches D sees; mix (B, 1) are WGAN-GP's
    interpolation weights. real_labels / fake_labels (B,): the classes of a conditional GAN (the fake batch
    is generated for fake_labels, and D judges each sample together with its label). Returns (grads_D, stats).
    """
    mlp.check_input(x_real, spec.data_size, "x_real")
    x_fake = generate(spec, params, z, fake_labels)  # (B, data_size), a constant from here on
    x_real, x_fake = _with_noise(x_real, real_noise), _with_noise(x_fake, fake_noise)
    real_in = with_labels(spec, x_real, real_labels, "the real batch")  # (B_real, data_size [+ C])
    fake_in = with_labels(spec, x_fake, fake_labels, "the fake batch")  # (B_fake, data_size [+ C])
    real_out, real_cache = mlp.forward(spec.discriminator, params, "D", real_in)  # (B_real, 1)
    fake_out, fake_cache = mlp.forward(spec.discriminator, params, "D", fake_in)  # (B_fake, 1)
    loss, grad_real_out, grad_fake_out = losses.d_loss(spec.loss, real_out, fake_out)
    _, grads_from_real = mlp.backward(spec.discriminator, params, "D", real_cache, grad_real_out)
    _, grads_from_fake = mlp.backward(spec.discriminator, params, "D", fake_cache, grad_fake_out)
    grads = {k: grads_from_real[k] + grads_from_fake[k] for k in grads_from_real}  # the loss is a sum of both
    pen = 0.0
    if penalty_spec is not None:
        if spec.num_classes:
            raise ValueError("gradient penalties are not implemented for conditional GANs: the input gradient "
                             "would have to leave out the label inputs")
        pen, pen_grads = penalty.penalty_and_grads(spec, penalty_spec, params, x_real, x_fake, mix)
        grads = {k: grads[k] + pen_grads[k] for k in grads}  # loss + penalty: gradients add
    return grads, StepStats(loss + pen, real_out, fake_out, global_norm(grads), pen)


def g_loss_and_grads(spec: GANSpec, params: dict, z, *, fake_noise=None, labels=None):
    """G's loss on D(G(z)) and its gradient with respect to G's parameters only.

    The gradient passes through D to D's input (D's own parameter gradients are computed by the
    backward pass but thrown away: D is frozen), then through G. With instance noise D sees G(z) + noise;
    the noise is a constant, so dL/dG(z) is dL/d(G(z) + noise). A conditional G generates for `labels`, and
    D judges each sample with that label; the label inputs are constants, so only the first data_size columns
    of D's input gradient flow back into G.
    Returns (grads_G, stats).
    """
    mlp.check_input(z, spec.z_size, "z")
    g_in = with_labels(spec, z, labels, "generate")  # (B, z_size [+ C])
    x_fake, g_cache = mlp.forward(spec.generator, params, "G", g_in)  # (B, data_size)
    d_in = with_labels(spec, _with_noise(x_fake, fake_noise), labels, "the fake batch")  # (B, data_size [+ C])
    fake_out, d_cache = mlp.forward(spec.discriminator, params, "D", d_in)  # (B, 1)
    loss, grad_fake_out = losses.g_loss(spec.loss, fake_out)
    grad_d_in, _ = mlp.backward(spec.discriminator, params, "D", d_cache, grad_fake_out)  # (B, data_size [+ C])
    grad_x_fake = grad_d_in[:, :spec.data_size]  # (B, data_size): the label columns are constants
    _, grads = mlp.backward(spec.generator, params, "G", g_cache, grad_x_fake)
    return grads, StepStats(loss, None, fake_out, global_norm(grads))


# ----- Updates: pure functions of (params, optimizer state, data) -----

def clip_weights(params: dict, clip_value: float) -> dict:
    """WGAN's weight clipping: every critic parameter (weights and biases) clamped to [-c, c]."""
    return {k: np.clip(v, -clip_value, clip_value) for k, v in params.items()}


def d_update(spec: GANSpec, opt: optim.OptimizerSpec, params: dict, opt_state: dict, x_real, z,
             clip_value: float | None = None, **options):
    """One D step: gradient, optimizer update of D's parameters, then clipping if asked.

    A pure function: returns (new_params, new_opt_state, stats); G's entries are passed through as the
    same objects. Unrolled GANs call this repeatedly to look ahead at future versions of D.
    options: instance noise and gradient penalty, as in d_loss_and_grads.
    """
    grads, stats = d_loss_and_grads(spec, params, x_real, z, **options)
    new_d, new_state = optim.step(opt, network(params, "D"), grads, opt_state)
    if clip_value is not None:
        new_d = clip_weights(new_d, clip_value)
    return {**params, **new_d}, new_state, stats


def g_update(spec: GANSpec, opt: optim.OptimizerSpec, params: dict, opt_state: dict, z, *, fake_noise=None,
             labels=None):
    """One G step: gradient through D into G, optimizer update of G's parameters only."""
    grads, stats = g_loss_and_grads(spec, params, z, fake_noise=fake_noise, labels=labels)
    new_g, new_state = optim.step(opt, network(params, "G"), grads, opt_state)
    return {**params, **new_g}, new_state, stats
