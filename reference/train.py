"""Alternating training: k D steps with G frozen, then m G steps with D frozen, repeated.

One *training step* in this project is one full round: k D updates, each on a fresh real batch and a
fresh z, followed by m G updates, each on a fresh z. Every random number a round consumes is an input
(StepInputs), drawn by the caller. Training is therefore a deterministic function of the initial state
and the inputs: the same inputs replay the same run bit for bit, and two implementations handed the same
inputs can be compared step by step.
"""

import numbers
from dataclasses import asdict, dataclass, field

import numpy as np

from . import gan, optim


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

    def __post_init__(self):
        for what in ("batch_size", "d_steps", "g_steps"):
            n = getattr(self, what)
            if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
                raise ValueError(f"{what} must be a positive int, got {n!r}")
        clip = self.clip_value
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, numbers.Real)
                                 or not (np.isfinite(clip) and clip > 0)):
            raise ValueError(f"clip_value must be a positive number or None, got {self.clip_value!r}")

    def to_dict(self) -> dict:
        return {"spec": self.spec.to_dict(), "d_optimizer": self.d_optimizer.to_dict(),
                "g_optimizer": self.g_optimizer.to_dict(), "batch_size": self.batch_size,
                "d_steps": self.d_steps, "g_steps": self.g_steps, "clip_value": self.clip_value}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(gan.GANSpec.from_dict(d["spec"]), optim.OptimizerSpec(**d["d_optimizer"]),
                   optim.OptimizerSpec(**d["g_optimizer"]), d["batch_size"], d["d_steps"], d["g_steps"],
                   d["clip_value"])


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
    """

    real: np.ndarray
    z_d: np.ndarray
    z_g: np.ndarray

    def check(self, config: TrainConfig):
        k, m, spec = config.d_steps, config.g_steps, config.spec
        for what, array, shape in [("real", self.real, (k, None, spec.data_size)),
                                   ("z_d", self.z_d, (k, None, spec.z_size)),
                                   ("z_g", self.z_g, (m, None, spec.z_size))]:
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


def draw_inputs(config: TrainConfig, data: np.ndarray, rng: np.random.Generator) -> StepInputs:
    """The project's standard way to draw one round's inputs from a dataset and a numpy Generator.

    Real batches are drawn uniformly with replacement from data (N, data_size); z ~ N(0, I).
    Draw order: real indices (k, B), then z_d (k, B, z), then z_g (m, B, z).
    """
    k, m, b, spec = config.d_steps, config.g_steps, config.batch_size, config.spec
    index = rng.integers(0, len(data), size=(k, b))
    z_d = rng.standard_normal((k, b, spec.z_size))
    z_g = rng.standard_normal((m, b, spec.z_size))
    return StepInputs(data[index], z_d, z_g)


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
    for i in range(config.d_steps):  # G frozen: d_update changes only "D.*" entries
        params, d_opt, d_stats = gan.d_update(config.spec, config.d_optimizer, params, d_opt,
                                              inputs.real[i], inputs.z_d[i], config.clip_value)
    for i in range(config.g_steps):  # D frozen: g_update changes only "G.*" entries
        params, g_opt, g_stats = gan.g_update(config.spec, config.g_optimizer, params, g_opt, inputs.z_g[i])
    metrics = StepMetrics(step=state.step + 1, d_loss=d_stats.loss, g_loss=g_stats.loss,
                          d_grad_norm=d_stats.grad_norm, g_grad_norm=g_stats.grad_norm,
                          **d_step_metrics(config.spec.loss, d_stats))
    return TrainState(params, d_opt, g_opt, state.step + 1), metrics


def train(config: TrainConfig, data: np.ndarray, steps: int, seed: int, on_step=None):
    """Train from scratch for `steps` rounds; the run is fully determined by (config, data, steps, seed).

    Parameters come from gan.init_params(spec, seed); step inputs from the stream
    np.random.default_rng([seed, 2]). on_step(state, metrics) is called after every round.
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
        state, metrics = train_step(config, state, draw_inputs(config, data, rng))
        if on_step is not None:
            on_step(state, metrics)
    return state
