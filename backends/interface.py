"""The interface every ganspec backend implements (the reference's own adapter is the first).

A backend is a stateful object holding one GAN (parameters of G and D, both optimizers' states and the
number of completed rounds) in whatever form its framework likes: torch tensors on a device, JAX
pytrees, CuPy arrays. Everything that crosses the interface is NumPy, in the reference's interchange
format (reference/mlp.py for parameters, reference/optim.py for optimizer state), so a trainer, a
checkpoint and the conformance suite never need to know which framework is underneath.

Conventions:
- Arrays handed in are NumPy (any float dtype; the backend casts them to its own dtype).
  Arrays handed out are NumPy float64 for parameters/optimizer state, and of the backend's dtype otherwise.
- All randomness is an input. Nothing in this interface draws random numbers except `init`, which uses
  the reference's documented initialisation so that every backend starts from the same parameters.
- Losses are means over the batch; gradients are those of exactly the loss reported.
- `d_grads` and `g_grads` return the gradients of the D step and the G step *without* changing anything;
  `train_step` performs one round (k D updates, then m G updates) and changes the state.

Hot loop: `train_step` takes StepInputs (NumPy) and returns StepMetrics (Python floats), which costs a
host/device round trip per round. The shared trainer therefore uses `set_data` once (the training set
moves to the device) and then `train_rounds` on chunks of rounds: the random draws of a whole chunk
(row indices into the data and the noise) go to the device in one transfer, and metrics come back once
per chunk. The default implementations below are correct for any backend; accelerator backends
override them for speed, and must give the same results as calling `train_step` round by round.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import numpy as np

from reference import gan, losses, optim
from reference.penalty import PENALTIES
from reference.train import StepInputs, StepMetrics, TrainConfig, TrainState, train_step

DTYPES = ("float64", "float32")


class Backend(abc.ABC):
    """One GAN, trained by one framework. Construct, then `init(seed)` or `load_state(...)`."""

    name: ClassVar[str]  # "reference", "torch", "jax", "cupy", or a third party's name

    # The share of a conformance profile's examples this backend runs. Every example has new shapes; a
    # backend that compiles a whole program per shape (JAX) pays about a second per example and check on
    # a CPU, so it runs fewer examples per profile to keep the suite's time bounded (docs/conformance.md).
    conformance_examples_share: ClassVar[float] = 1.0

    # The training options beyond the primer's core this backend implements (see `required_features`).
    # A backend refuses a config that asks for one it does not list, instead of silently ignoring it.
    features: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: TrainConfig, *, dtype: str = "float64", device: str | None = None):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a reference.train.TrainConfig, got {type(config).__name__}")
        missing = sorted(required_features(config) - self.features)
        if missing:
            raise ValueError(f"the {self.name} backend does not implement {', '.join(missing)} (yet); the reference "
                             f"backend does (reference.train.train_step)")
        self.config = config
        self.dtype = dtype
        self.device = device

    # ----- state in and out (interchange format) -----

    def init(self, seed: int) -> None:
        """Parameters from reference.gan.init_params(spec, seed), fresh optimizer states, step 0."""
        params = gan.init_params(self.config.spec, seed)
        self.load_state(params,
                        optim.init_state(self.config.d_optimizer, gan.network(params, "D")),
                        optim.init_state(self.config.g_optimizer, gan.network(params, "G")),
                        step=0)

    @abc.abstractmethod
    def load_state(self, params: dict, d_opt_state: dict, g_opt_state: dict, step: int) -> None:
        """Replace the whole training state. Call `check_state` first: nothing may change if it raises."""

    def check_state(self, params: dict, d_opt_state: dict, g_opt_state: dict, step: int) -> tuple[int, int]:
        """Validate a whole state against this backend's config; return the (D, G) optimizer step counts.

        Parameters: the spec's names and shapes, finite floats (gan.check_params). Optimizer states: the
        configured optimizers' names and shapes, finite, whole step counts (optim.check_state). step: an int >= 0.
        """
        gan.check_params(self.config.spec, params)
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        d_step = optim.check_state(self.config.d_optimizer, gan.network(params, "D"), d_opt_state, "D")
        g_step = optim.check_state(self.config.g_optimizer, gan.network(params, "G"), g_opt_state, "G")
        return d_step, g_step

    @abc.abstractmethod
    def export_params(self) -> dict[str, np.ndarray]:
        """All parameters, "G.*" then "D.*", in interchange order and layout, as float64 NumPy arrays."""

    @abc.abstractmethod
    def export_optimizer_state(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(D's optimizer state, G's optimizer state) in the interchange format, float64."""

    @property
    @abc.abstractmethod
    def step(self) -> int:
        """The number of completed rounds."""

    # ----- forward passes -----

    @abc.abstractmethod
    def generate(self, z: np.ndarray) -> np.ndarray:
        """G(z): (B, z_size) -> (B, data_size). A backend with the "conditional" feature also takes labels=(B,)."""

    @abc.abstractmethod
    def discriminate(self, x: np.ndarray) -> np.ndarray:
        """D's logits (WGAN: critic scores): (B, data_size) -> (B, 1). Conditional: labels=(B,) as well."""

    # ----- losses on D's outputs, with gradients with respect to those outputs -----

    @abc.abstractmethod
    def d_loss(self, real_out: np.ndarray, fake_out: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(D's loss, dL/d real_out, dL/d fake_out) for the configured loss kind."""

    @abc.abstractmethod
    def g_loss(self, fake_out: np.ndarray) -> tuple[float, np.ndarray]:
        """(G's loss, dL/d fake_out) for the configured loss kind."""

    # ----- the D step and the G step, without updating -----

    @abc.abstractmethod
    def d_grads(self, x_real: np.ndarray, z: np.ndarray, *, real_noise: np.ndarray | None = None,
                fake_noise: np.ndarray | None = None, mix: np.ndarray | None = None) -> tuple[float, dict]:
        """D's loss and its gradient for every "D.*" parameter (interchange layout, float64).

        real_noise / fake_noise (B, data_size): instance noise added to what D sees, already scaled by sigma.
        mix (B, 1): WGAN-GP's interpolation weights. The config's gradient penalty, if any, is part of the loss.
        A backend with the "conditional" feature also takes real_labels=, fake_labels= (B,) ints.
        """

    @abc.abstractmethod
    def g_grads(self, z: np.ndarray, *, fake_noise: np.ndarray | None = None) -> tuple[float, dict]:
        """G's loss and its gradient for every "G.*" parameter (interchange layout, float64).
        Conditional: labels= (B,), the classes G generates for."""

    # ----- training -----

    @abc.abstractmethod
    def train_step(self, inputs: StepInputs) -> StepMetrics:
        """One round: k D updates (clipping after each when configured), then m G updates.
        Instance noise is scaled by config.noise_scale(self.step), the completed rounds before this one."""

    def set_data(self, data: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Keep the training set (N, data_size) where the backend computes, for `train_rounds`; a conditional
        GAN also needs every row's class, labels (N,) integers in [0, num_classes)."""
        self._data = np.asarray(data)
        self._labels = self.check_data_labels(labels, len(self._data))

    def check_labels(self, labels, rows: int, what: str):
        """Labels handed to a method: (rows,) ints in [0, num_classes) for a conditional GAN, which needs them; an
        unconditional GAN refuses them. Returns the labels, or None for an unconditional GAN."""
        classes = self.config.spec.num_classes
        if classes == 0:
            if labels is not None:
                raise ValueError(f"{what}: labels were given to an unconditional GAN (num_classes = 0)")
            return None
        if labels is None:
            raise ValueError(f"{what}: a conditional GAN (num_classes = {classes}) needs class labels")
        gan.check_labels(labels, rows, classes, what)
        return labels

    def check_data_labels(self, labels, rows: int):
        """labels for set_data: required (N,) ints in range for a conditional config, refused otherwise."""
        if not self.config.needs_labels:
            if labels is not None:
                raise ValueError("set_data got labels, but the GAN is not conditional (spec.num_classes = 0)")
            return None
        if labels is None:
            raise ValueError(f"a conditional GAN needs set_data(data, labels): the class of every row "
                             f"(num_classes = {self.config.spec.num_classes})")
        labels = np.asarray(labels)
        gan.check_labels(labels, rows, self.config.spec.num_classes, "set_data labels")
        return labels

    def train_rounds(self, index: np.ndarray, z_d: np.ndarray, z_g: np.ndarray, **extras) -> list[StepMetrics]:
        """Run len(index) rounds on the data given to `set_data`.

        index: (n, k, B) integer rows of the data; round r's real batches are data[index[r]].
        z_d:   (n, k, B, z_size);  z_g: (n, m, B, z_size).
        extras: what the config asks for, each with a leading round axis: noise_real, noise_fake
        (n, k, B, data_size), noise_g (n, m, B, data_size), mix (n, k, B, 1), and for a conditional GAN the
        classes G generates for, labels_fake (n, k, B) and labels_g (n, m, B) (the real batches' classes are
        the labels given to set_data, at index). See StepInputs.
        Returns one StepMetrics per round; equal to calling train_step round by round.
        """
        data = getattr(self, "_data", None)
        if data is None:
            raise RuntimeError("call set_data(data) before train_rounds")
        self.check_chunk(index, z_d, z_g, len(data), **extras)
        labels = getattr(self, "_labels", None)
        rounds = []
        for r in range(len(index)):
            real_labels = {} if labels is None else {"labels_real": labels[index[r]]}
            rounds.append(self.train_step(StepInputs(data[index[r]], z_d[r], z_g[r], **real_labels,
                                                     **{k: v[r] for k, v in extras.items()})))
        return rounds

    def check_chunk(self, index: np.ndarray, z_d: np.ndarray, z_g: np.ndarray, rows: int, **extras) -> int:
        """Validate train_rounds' arguments against the config and a dataset of `rows` rows; return n."""
        cfg = self.config
        k, m, z_size, d = cfg.d_steps, cfg.g_steps, cfg.spec.z_size, cfg.spec.data_size
        if not isinstance(index, np.ndarray) or not np.issubdtype(index.dtype, np.integer):
            raise TypeError("index must be an integer numpy array of shape (n, d_steps, batch)")
        if index.ndim != 3 or index.shape[1] != k or index.shape[2] == 0:
            raise ValueError(f"index must have shape (n, {k}, batch > 0), got {index.shape}")
        n, _, batch = index.shape
        wanted = {"noise_real": (n, k, batch, d), "noise_fake": (n, k, batch, d), "noise_g": (n, m, batch, d)}
        wanted = {name: shape for name, shape in wanted.items() if cfg.needs_noise}
        if cfg.needs_mix:
            wanted["mix"] = (n, k, batch, 1)
        label_shapes = {"labels_fake": (n, k, batch), "labels_g": (n, m, batch)} if cfg.needs_labels else {}
        wanted.update(label_shapes)
        unexpected = sorted(set(extras) - set(wanted))
        if unexpected:
            raise ValueError(f"train_rounds got {', '.join(unexpected)}, which this config does not use")
        missing = sorted(set(wanted) - set(extras))
        if missing:
            raise ValueError(f"train_rounds needs {', '.join(missing)} for this config (instance noise / wgan-gp / "
                             f"conditional)")
        arrays = [("z_d", z_d, (n, k, batch, z_size)), ("z_g", z_g, (n, m, batch, z_size))]
        arrays += [(name, extras[name], shape) for name, shape in wanted.items() if name not in label_shapes]
        for name, shape in label_shapes.items():
            array = extras[name]
            if not isinstance(array, np.ndarray) or array.shape != shape:
                raise ValueError(f"{name} must be an integer numpy array of shape {shape}")
            gan.check_labels(array.reshape(-1), array.size, cfg.spec.num_classes, name)
        for what, array, shape in arrays:
            if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
                raise TypeError(f"{what} must be a floating-point numpy array")
            if array.shape != shape:
                raise ValueError(f"{what} must have shape {shape}, got {array.shape}")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{what} contains NaN or Inf")
        if "mix" in extras and (np.any(extras["mix"] < 0) or np.any(extras["mix"] > 1)):
            raise ValueError("mix must lie in [0, 1]")
        if n and (index.min() < 0 or index.max() >= rows):
            raise ValueError(f"index holds rows outside the data given to set_data: rows must be in [0, {rows}), "
                             f"got min {index.min()}, max {index.max()}")
        return n


def required_features(config: TrainConfig) -> frozenset[str]:
    """The optional features a config uses: "instance_noise", "penalty:<kind>" and "conditional"."""
    wanted = {"conditional"} if config.spec.num_classes else set()
    if config.instance_noise > 0:
        wanted.add("instance_noise")
    if config.penalty is not None:
        wanted.add(f"penalty:{config.penalty.kind}")
    return frozenset(wanted)


ALL_FEATURES = frozenset({"instance_noise", *(f"penalty:{kind}" for kind in PENALTIES)})
"""The remedies for failure to converge: instance noise and every gradient penalty."""
CONDITIONAL = "conditional"
"""A conditional GAN (spec.num_classes > 0): labels in StepInputs, generate/discriminate(labels=...)."""


class ReferenceBackend(Backend):
    """The NumPy reference behind the interface: the oracle the others are held to.

    dtype "float32" runs the very same reference code on float32 arrays; the conformance suite uses it
    to tell whether a float32 backend's error is the backend's or float32's own.
    """

    name = "reference"
    features = ALL_FEATURES | {CONDITIONAL}

    def __init__(self, config: TrainConfig, *, dtype: str = "float64", device: str | None = None):
        super().__init__(config, dtype=dtype, device=device)
        if device not in (None, "cpu"):
            raise ValueError(f"the reference backend runs on the CPU only, not {device!r}")
        self._np_dtype = np.dtype(dtype)
        self._state = None

    def _cast(self, mapping: dict) -> dict:
        return {k: np.asarray(v, dtype=self._np_dtype) for k, v in mapping.items()}

    def _array(self, x) -> np.ndarray:
        return np.asarray(x, dtype=self._np_dtype)

    def _require_state(self):
        if self._state is None:
            raise RuntimeError("the backend has no state yet: call init(seed) or load_state(...) first")
        return self._state

    def load_state(self, params, d_opt_state, g_opt_state, step):
        self.check_state(params, d_opt_state, g_opt_state, step)
        self._state = TrainState(self._cast(params), self._cast(d_opt_state), self._cast(g_opt_state), int(step))

    def export_params(self):
        return {k: np.asarray(v, dtype=np.float64) for k, v in self._require_state().params.items()}

    def export_optimizer_state(self):
        state = self._require_state()
        as64 = lambda d: {k: np.asarray(v, dtype=np.float64) for k, v in d.items()}  # noqa: E731
        return as64(state.d_opt_state), as64(state.g_opt_state)

    @property
    def step(self):
        return self._require_state().step

    def generate(self, z, labels=None):
        return gan.generate(self.config.spec, self._require_state().params, self._array(z), labels)

    def discriminate(self, x, labels=None):
        return gan.discriminate(self.config.spec, self._require_state().params, self._array(x), labels)

    def d_loss(self, real_out, fake_out):
        return losses.d_loss(self.config.spec.loss, self._array(real_out), self._array(fake_out))

    def g_loss(self, fake_out):
        return losses.g_loss(self.config.spec.loss, self._array(fake_out))

    def _optional(self, x):
        return None if x is None else self._array(x)

    def d_grads(self, x_real, z, *, real_noise=None, fake_noise=None, mix=None, real_labels=None, fake_labels=None):
        grads, stats = gan.d_loss_and_grads(
            self.config.spec, self._require_state().params, self._array(x_real), self._array(z),
            real_noise=self._optional(real_noise), fake_noise=self._optional(fake_noise),
            penalty_spec=self.config.penalty, mix=self._optional(mix), real_labels=real_labels,
            fake_labels=fake_labels)
        return stats.loss, {k: v.astype(np.float64) for k, v in grads.items()}

    def g_grads(self, z, *, fake_noise=None, labels=None):
        grads, stats = gan.g_loss_and_grads(self.config.spec, self._require_state().params, self._array(z),
                                            fake_noise=self._optional(fake_noise), labels=labels)
        return stats.loss, {k: v.astype(np.float64) for k, v in grads.items()}

    def train_step(self, inputs):
        def cast_array(name, a):
            return a if a is None or name.startswith("labels") else self._array(a)  # labels stay integers

        cast = StepInputs(**{f.name: cast_array(f.name, getattr(inputs, f.name)) for f in dataclasses.fields(inputs)})
        self._state, metrics = train_step(self.config, self._require_state(), cast)
        return metrics
