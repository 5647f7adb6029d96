"""Alternating training: k D steps with G frozen, then m G steps with D frozen, repeated.

One *training step* in this project is one full round: k D updates, each on a fresh real batch and a
fresh z, followed by m G updates, each on a fresh z. Every random number a round consumes is an input
(StepInputs), drawn by the caller. Training is therefore a deterministic function of the initial state
and the inputs: the same inputs replay the same run bit for bit, and two implementations handed the same
inputs can be compared step by step.

Options against failure to converge (primer, "common problems"): `instance_noise` sigma adds N(0, sigma^2)
noise to every sample D sees, in D steps and G steps alike, optionally decayed linearly to 0 over
`instance_noise_anneal` rounds; `penalty` adds a gradient penalty (penalty.py) to D's loss.
"""

import numbers
from dataclasses import asdict, dataclass, field

import numpy as np

from . import gan, optim
from .penalty import PenaltySpec


@dataclass(frozen=True)
class TrainConfig:
    """How to train a GAN. clip_value (WGAN weight clipping) is applied after every D update when set."""

    spec: gan.GANSpec
    d_optimizer: optim.OptimizerSpec = field(default_factory=optim.OptimizerSpec)
    g_optimizer: optim.OptimizerSpec = field(default_factory=optim.OptimizerSpec)
    batch_size: int = 64
    d_steps: int = 1  # k: D updates per round
    g_steps: int = 1  # m: G updates per round
    clip_value: float | None = None
    penalty: PenaltySpec | None = None  # a gradient penalty on D
    instance_noise: float = 0.0  # sigma of the noise added to D's inputs (0: none)
    instance_noise_anneal: int = 0  # rounds over which sigma decays linearly to 0 (0: constant)

    def __post_init__(self):
        for what in ("batch_size", "d_steps", "g_steps"):
            n = getattr(self, what)
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
                raise ValueError(f"{what} must be a positive int, got {n!r}")
        clip = self.clip_value
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, numbers.Real)
                                 or not (np.isfinite(clip) and clip > 0)):
            raise ValueError(f"clip_value must be a positive number or None, got {self.clip_value!r}")
        if self.penalty is not None and not isinstance(self.penalty, PenaltySpec):
            raise TypeError(f"penalty must be a reference.penalty.PenaltySpec or None, got {self.penalty!r}")
        if self.penalty is not None and self.spec.num_classes:
            raise ValueError("gradient penalties are not implemented for conditional GANs (num_classes > 0) yet")
        if self.penalty is not None and self.penalty.kind == "roth" and self.spec.loss == "wasserstein":
            raise ValueError("the roth penalty weights samples by D's probabilities and needs a logit loss "
                             "(minimax or nonsaturating); for the Wasserstein loss use wgan-gp")
        sigma = self.instance_noise
        if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not (np.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"instance_noise must be a finite number >= 0, got {sigma!r}")
        n = self.instance_noise_anneal
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"instance_noise_anneal must be an int >= 0 (rounds; 0: no annealing), got {n!r}")

    def noise_scale(self, step: int) -> float:
        """sigma for the round that starts after `step` completed rounds."""
        if self.instance_noise_anneal == 0:
            return float(self.instance_noise)
        return float(self.instance_noise) * max(0.0, 1.0 - step / self.instance_noise_anneal)

    @property
    def needs_noise(self) -> bool:
        return self.instance_noise > 0

    @property
    def needs_labels(self) -> bool:
        return self.spec.num_classes > 0

    @property
    def needs_mix(self) -> bool:
        return self.penalty is not None and self.penalty.kind == "wgan-gp"

    def to_dict(self) -> dict:
        return {"spec": self.spec.to_dict(), "d_optimizer": self.d_optimizer.to_dict(),
                "g_optimizer": self.g_optimizer.to_dict(), "batch_size": self.batch_size,
                "d_steps": self.d_steps, "g_steps": self.g_steps, "clip_value": self.clip_value,
                "penalty": None if self.penalty is None else self.penalty.to_dict(),
                "instance_noise": self.instance_noise, "instance_noise_anneal": self.instance_noise_anneal}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The inverse of to_dict. Dicts written before penalties and instance noise existed lack those keys."""
        pen = d.get("penalty")
        return cls(gan.GANSpec.from_dict(d["spec"]), optim.OptimizerSpec(**d["d_optimizer"]),
                   optim.OptimizerSpec(**d["g_optimizer"]), d["batch_size"], d["d_steps"], d["g_steps"],
                   d["clip_value"], None if pen is None else PenaltySpec(**pen),
                   d.get("instance_noise", 0.0), d.get("instance_noise_anneal", 0))


@dataclass
class TrainState:
    """Everything that changes during training, all of it in the interchange format."""

    params: dict
    d_opt_state: dict
    g_opt_state: dict
    step: int = 0  # completed rounds

    @classmethod
    def initial(cls, config: TrainConfig, seed: int) -> "TrainState":
        params = gan.init_params(config.spec, seed)
        return cls(params, optim.init_state(config.d_optimizer, gan.network(params, "D")),
                   optim.init_state(config.g_optimizer, gan.network(params, "G")))


@dataclass(frozen=True)
class StepInputs:
    """All the randomness one round consumes.

    real: (d_steps, batch, data_size)  one real batch per D update
    z_d:  (d_steps, batch, z_size)     the noise for the fake batch of each D update
    z_g:  (g_steps, batch, z_size)     the noise for each G update
    Only when the config asks for them (None otherwise):
    noise_real, noise_fake: (d_steps, batch, data_size)  N(0, 1) instance noise for D's two batches
    noise_g:                (g_steps, batch, data_size)  N(0, 1) instance noise for the G steps' fakes
    mix:                    (d_steps, batch, 1)          U(0, 1) interpolation weights of WGAN-GP
    labels_real, labels_fake: (d_steps, batch) ints       a conditional GAN's classes of the real batches and
    labels_g:               (g_steps, batch) ints         of the samples G generates in D and G steps
    """

    real: np.ndarray
    z_d: np.ndarray
    z_g: np.ndarray
    noise_real: np.ndarray | None = None
    noise_fake: np.ndarray | None = None
    noise_g: np.ndarray | None = None
    mix: np.ndarray | None = None
    labels_real: np.ndarray | None = None
    labels_fake: np.ndarray | None = None
    labels_g: np.ndarray | None = None

    def check(self, config: TrainConfig):
        k, m, spec = config.d_steps, config.g_steps, config.spec
        b = self.real.shape[1] if isinstance(self.real, np.ndarray) and self.real.ndim == 3 else None
        required = [("real", self.real, (k, None, spec.data_size)),
                    ("z_d", self.z_d, (k, None, spec.z_size)),
                    ("z_g", self.z_g, (m, None, spec.z_size))]
        if config.needs_noise:
            required += [("noise_real", self.noise_real, (k, b, spec.data_size)),
                         ("noise_fake", self.noise_fake, (k, self.z_d.shape[1], spec.data_size)),
                         ("noise_g", self.noise_g, (m, self.z_g.shape[1], spec.data_size))]
        if config.needs_mix:
            required += [("mix", self.mix, (k, b, 1))]
        for what, array, shape in required:
            if array is None:
                raise ValueError(f"StepInputs.{what} is missing: the config asks for it (shape {shape})")
            if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
                raise TypeError(f"StepInputs.{what} must be a floating-point numpy array")
            wrong_size = any(want is not None and got != want for got, want in zip(array.shape, shape, strict=False))
            if array.ndim != 3 or wrong_size:
                raise ValueError(f"StepInputs.{what} must have shape {shape} (None: any batch size), "
                                 f"got {array.shape}")
            if array.shape[1] == 0:
                raise ValueError(f"StepInputs.{what} has an empty batch")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"StepInputs.{what} contains NaN or Inf")
        if config.needs_labels:
            for what, labels, like in [("labels_real", self.labels_real, self.real),
                                       ("labels_fake", self.labels_fake, self.z_d),
                                       ("labels_g", self.labels_g, self.z_g)]:
                if labels is None:
                    raise ValueError(f"StepInputs.{what} is missing: a conditional GAN needs class labels")
                if not isinstance(labels, np.ndarray) or labels.shape != like.shape[:2]:
                    raise ValueError(f"StepInputs.{what} must be an array of shape {like.shape[:2]}")
                for i in range(len(labels)):
                    gan.check_labels(labels[i], labels.shape[1], spec.num_classes, f"StepInputs.{what}[{i}]")
        if config.needs_mix and (self.z_d.shape[1] != b or np.any(self.mix < 0) or np.any(self.mix > 1)):
            raise ValueError("wgan-gp pairs real and fake samples: z_d must have the real batch's size and mix "
                             "must lie in [0, 1]")


def draw_inputs(config: TrainConfig, data: np.ndarray, rng: np.random.Generator, labels=None) -> StepInputs:
    """The project's standard way to draw one round's inputs from a dataset and a numpy Generator.

    Real batches are drawn uniformly with replacement from data (N, data_size); z ~ N(0, I).
    Draw order: real indices (k, B), then z_d (k, B, z), then z_g (m, B, z); then, only when the config
    asks for them, noise_real, noise_fake (k, B, data), noise_g (m, B, data) ~ N(0, I) and mix (k, B, 1)
    ~ U(0, 1). A config without those options draws exactly what it always did.
    A conditional GAN needs `labels` (N,), the class of every row of data: the real batches' labels are
    labels[index]; the labels G generates for, in D steps (k, B) and G steps (m, B), are drawn last, uniformly.
    """
    k, m, b, spec = config.d_steps, config.g_steps, config.batch_size, config.spec
    index = rng.integers(0, len(data), size=(k, b))
    z_d = rng.standard_normal((k, b, spec.z_size))
    z_g = rng.standard_normal((m, b, spec.z_size))
    extra = {}
    if config.needs_noise:
        extra["noise_real"] = rng.standard_normal((k, b, spec.data_size))
        extra["noise_fake"] = rng.standard_normal((k, b, spec.data_size))
        extra["noise_g"] = rng.standard_normal((m, b, spec.data_size))
    if config.needs_mix:
        extra["mix"] = rng.uniform(0.0, 1.0, size=(k, b, 1))
    if config.needs_labels:
        if labels is None or not isinstance(labels, np.ndarray) or labels.shape != (len(data),):
            raise ValueError(f"a conditional GAN needs labels: an integer array of shape ({len(data)},), one class "
                             f"per row of data")
        c = config.spec.num_classes
        extra["labels_real"] = labels[index]  # (k, B)
        extra["labels_fake"] = rng.integers(0, c, size=(k, b))
        extra["labels_g"] = rng.integers(0, c, size=(m, b))
    elif labels is not None:
        raise ValueError("labels were given for an unconditional GAN (spec.num_classes = 0)")
    return StepInputs(data[index], z_d, z_g, **extra)


@dataclass
class StepMetrics:
    """What one round reports. D-side figures are from its last D update, G-side from its last G update.

    d_acc_real / d_acc_fake: share of the real batch D calls real (logit > 0) and of the fake batch it
    calls fake (logit < 0). For WGAN, accuracy has no meaning: critic_gap = mean C(x) - mean C(G(z)),
    the critic's estimate of the Wasserstein distance, is reported instead (the accuracies are NaN).
    """

    step: int
    d_loss: float
    g_loss: float
    d_acc_real: float
    d_acc_fake: float
    critic_gap: float
    d_grad_norm: float
    g_grad_norm: float
    d_penalty: float = 0.0  # the gradient penalty's share of d_loss (0 without one)

    def to_dict(self) -> dict:
        return asdict(self)


def d_step_metrics(loss_kind: str, stats: gan.StepStats) -> dict:
    """Accuracy (minimax / non-saturating) or critic gap (Wasserstein) from one D step's outputs."""
    gap = float(stats.real_out.mean() - stats.fake_out.mean())
    if loss_kind == "wasserstein":
        return {"d_acc_real": float("nan"), "d_acc_fake": float("nan"), "critic_gap": gap}
    return {"d_acc_real": float(np.mean(stats.real_out > 0)), "d_acc_fake": float(np.mean(stats.fake_out < 0)),
            "critic_gap": float("nan")}


def train_step(config: TrainConfig, state: TrainState, inputs: StepInputs) -> tuple[TrainState, StepMetrics]:
    """One round of alternating training. Pure: returns a new state and leaves `state` untouched."""
    inputs.check(config)
    params, d_opt, g_opt = state.params, state.d_opt_state, state.g_opt_state
    sigma = config.noise_scale(state.step)  # instance noise for this round (0: none)

    def scaled(noise, i):
        return None if not config.needs_noise else sigma * noise[i]  # (B, data_size)

    def row(array, i):
        return None if array is None else array[i]

    for i in range(config.d_steps):  # G frozen: d_update changes only "D.*" entries
        params, d_opt, d_stats = gan.d_update(
            config.spec, config.d_optimizer, params, d_opt, inputs.real[i], inputs.z_d[i], config.clip_value,
            real_noise=scaled(inputs.noise_real, i), fake_noise=scaled(inputs.noise_fake, i),
            penalty_spec=config.penalty, mix=row(inputs.mix, i),
            real_labels=row(inputs.labels_real, i), fake_labels=row(inputs.labels_fake, i))
    for i in range(config.g_steps):  # D frozen: g_update changes only "G.*" entries
        params, g_opt, g_stats = gan.g_update(config.spec, config.g_optimizer, params, g_opt, inputs.z_g[i],
                                              fake_noise=scaled(inputs.noise_g, i), labels=row(inputs.labels_g, i))
    metrics = StepMetrics(step=state.step + 1, d_loss=d_stats.loss, g_loss=g_stats.loss,
                          d_grad_norm=d_stats.grad_norm, g_grad_norm=g_stats.grad_norm,
                          d_penalty=d_stats.penalty, **d_step_metrics(config.spec.loss, d_stats))
    return TrainState(params, d_opt, g_opt, state.step + 1), metrics


def train(config: TrainConfig, data: np.ndarray, steps: int, seed: int, on_step=None, labels=None):
    """Train from scratch for `steps` rounds; the run is fully determined by (config, data, steps, seed).

    Parameters come from gan.init_params(spec, seed); step inputs from the stream
    np.random.default_rng([seed, 2]). on_step(state, metrics) is called after every round. A conditional
    GAN needs `labels` (N,), the class of every row of data.
    Returns the final TrainState.
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != config.spec.data_size:
        raise ValueError(f"data must be an array of shape (N, {config.spec.data_size})")
    if len(data) == 0:
        raise ValueError("data is empty: it needs at least one sample")
    if not np.issubdtype(data.dtype, np.floating):
        raise TypeError(f"data must be a floating-point array, got dtype {data.dtype}")
    if not np.all(np.isfinite(data)):
        raise ValueError("data contains NaN or Inf")
    state = TrainState.initial(config, seed)
    rng = np.random.default_rng([seed, 2])
    for _ in range(steps):
        state, metrics = train_step(config, state, draw_inputs(config, data, rng, labels))
        if on_step is not None:
            on_step(state, metrics)
    return state
