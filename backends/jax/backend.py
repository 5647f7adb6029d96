"""The JAX backend: pure functions, jax.grad, optax, one jit-compiled training round, a device loop over rounds.

State lives on the device as a pytree (`Carry`): G's and D's parameters as dicts in the interchange
layout, both optax states, and both optimizers' step counts. Three compiled programs do all the work:

    train_step    one round (k D updates, then m G updates), each update inside lax.scan, as one program;
    train_rounds  a lax.scan of that round over a chunk of rounds, real batches gathered on the device from
                  the data given to set_data; metrics come back as one (n, 8) array per chunk;
    the forward passes and gradient queries of the interface, each its own small program.

Recompilation: a jitted program is traced again for every new input shape. train_rounds therefore pads a
chunk of n rounds to a capacity of the next power of two (at least MIN_CAPACITY = 32) and scans over all
of them, with a lax.cond that skips the padding (n is a runtime value, so no padded round is computed,
and the compiled program does not depend on n). However the caller
sizes its chunks, one program serves every chunk of up to 32 rounds, and at most
ceil(log2(longest chunk / 32)) + 1 programs are ever compiled. `traces` counts how often each program's Python body ran
(that is, was traced); the tests hold it constant over a run.

Remedies: instance noise and the gradient penalties (nets.py) are part of the same programs. The noise arrays
are standard normal inputs; the round scales them by sigma = config.noise_scale(completed rounds), which the
host computes per round and hands in as an array (a runtime value: annealing compiles nothing new). A config
without them traces exactly the programs it always did (their arguments are None).

Conditional GANs (spec.num_classes = K > 0): G reads [z, onehot(y)] and D reads [x, onehot(y)] (nets.with_labels,
jax.nn.one_hot in the input's dtype). Labels travel as int32 arrays through the same programs: train_step takes
StepInputs' labels_real/labels_fake/labels_g, train_rounds scans labels_fake/labels_g like the other per-round
arrays and gathers the real batches' labels from the set_data labels kept on the device. A plain config passes
None for every label argument, so it compiles what it always did.

Numbers: dtype "float64" runs with jax_enable_x64 switched on only inside this backend's own calls
(`jax.enable_x64` as a context manager), so nothing leaks into the caller's JAX. "float32" uses full-
precision matrix products (no TF32 on GPUs), so it is float32 in earnest. "bfloat16" (a JAX-only extra) is
mixed precision: float32 master parameters and optimizer states, bfloat16 matrix products, losses and
metrics in float32; its arrays handed out are float32.

Scale: `device` may name several devices ("all", "cpu:all", "gpu:all"): the batch is then sharded over a
1-D mesh of them (axis "data") and the parameters are replicated; XLA inserts the reductions, so the
result is the one-device result up to the order of summation.
"""

from __future__ import annotations

import collections
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from backends.interface import ALL_FEATURES, CONDITIONAL, Backend
from reference import mlp
from reference.train import StepInputs, StepMetrics, TrainConfig

from . import optimizers
from .nets import Nets

DTYPES = ("float64", "float32", "bfloat16")
METRICS = ("d_loss", "d_acc_real", "d_acc_fake", "critic_gap", "d_grad_norm", "d_penalty", "g_loss", "g_grad_norm")
EXTRAS = ("noise_real", "noise_fake", "noise_g", "mix")  # StepInputs' optional arrays, in train_rounds' order
LABELS = ("labels_real", "labels_fake", "labels_g")  # StepInputs' class labels (int32 on the device)


class Carry(NamedTuple):
    """Everything a training round changes, as one pytree."""

    g: dict  # "G.*" parameters
    d: dict  # "D.*" parameters
    d_opt: object  # optax state of D's optimizer
    g_opt: object  # optax state of G's optimizer
    d_count: jax.Array  # int32: D updates applied (the interchange "step" of D's optimizer)
    g_count: jax.Array  # int32: G updates applied


def resolve_devices(device: str | None) -> list:
    """The JAX devices a `device` string names.

    None: JAX's default device.  "cpu", "gpu" (or "cuda"), "tpu": that platform's first device.
    "gpu:1": one device by index.  "cpu:all", "gpu:all": every device of the platform (data parallel).
    "all": every device of JAX's default platform.
    """
    if device is None:
        return jax.devices()[:1]
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu', 'gpu:0' or 'gpu:all', got {device!r}")
    platform, _, which = device.strip().lower().partition(":")
    if platform == "all" and not which:
        return jax.devices()
    platform = {"cuda": "gpu"}.get(platform, platform)
    try:
        found = jax.devices(platform)
    except RuntimeError as error:
        raise ValueError(f"JAX has no {platform!r} device here ({error}); available: "
                         f"{', '.join(sorted({d.platform for d in jax.devices()}))}") from None
    if which == "":
        return found[:1]
    if which == "all":
        return found
    if not which.isdigit() or int(which) >= len(found):
        raise ValueError(f"device {device!r}: the index must be 0..{len(found) - 1} or 'all'")
    return [found[int(which)]]


def _scoped(method):
    """Run a method with jax_enable_x64 set for this backend's dtype, and restored afterwards."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with jax.enable_x64(self._x64):
            return method(self, *args, **kwargs)

    return wrapper


MIN_CAPACITY = 32  # chunks of up to 32 rounds share one program; padding costs a few kB of transfer, no compute


def _bucket(n: int) -> int:
    """The capacity a chunk of n rounds is padded to: the next power of two, at least MIN_CAPACITY."""
    return max(MIN_CAPACITY, 1 << (n - 1).bit_length())


def _pad(array: np.ndarray, capacity: int) -> np.ndarray:
    """array with zeros appended along axis 0 up to `capacity` rows (rounds that are never run)."""
    if len(array) == capacity:
        return array
    return np.concatenate([array, np.zeros((capacity - len(array), *array.shape[1:]), dtype=array.dtype)])


class JaxBackend(Backend):
    """One GAN trained with JAX and optax. dtype: "float64" (conformance), "float32", "bfloat16"."""

    name = "jax"
    features = ALL_FEATURES | {CONDITIONAL}  # noise, every penalty, conditional GANs: every dtype, on a mesh
    conformance_examples_share = 0.15  # every example compiles fresh XLA programs: ~1 s per example and check

    def __init__(self, config: TrainConfig, *, dtype: str = "float64", device: str | None = None,
                 amp: bool = False, compile: bool = True):
        """amp=True (the shared CLI's --amp) with dtype "float32" is the same as dtype "bfloat16": float32
        master state, bfloat16 products. compile: JAX always compiles (jit); compile=False is refused."""
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a reference.train.TrainConfig, got {type(config).__name__}")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; the jax backend offers {', '.join(DTYPES)}")
        if amp and dtype == "float64":
            raise ValueError("amp=True (bfloat16 products, float32 master state) needs dtype 'float32', not float64")
        if not compile:
            raise ValueError("the jax backend always compiles its programs with jax.jit; compile=False is not offered")
        super().__init__(config, dtype="float32" if dtype == "bfloat16" else dtype, device=device)
        self.dtype = dtype
        self.amp = amp or dtype == "bfloat16"
        self._x64 = dtype == "float64"
        self._np_dtype = np.dtype(np.float64 if self._x64 else np.float32)  # storage: params, states, inputs
        self.devices = resolve_devices(device)
        self.mesh = Mesh(np.array(self.devices), ("data",))
        self._replicated = NamedSharding(self.mesh, P())
        bf16 = self.amp
        self._nets = Nets(config.spec, compute_dtype=jnp.bfloat16 if bf16 else None,
                          precision=jax.lax.Precision.DEFAULT if bf16 else jax.lax.Precision.HIGHEST,
                          penalty=config.penalty)
        self._d_tx = optimizers.make(config.d_optimizer)
        self._g_tx = optimizers.make(config.g_optimizer)
        self._g_names = list(mlp.param_shapes(config.spec.generator, "G"))
        self._d_names = list(mlp.param_shapes(config.spec.discriminator, "D"))
        self._carry: Carry | None = None
        self._step = 0
        self._data = None
        self._labels = None
        self.traces: collections.Counter = collections.Counter()  # program name -> times traced

        nets, rep = self._nets, self._replicated
        self._generate_jit = jax.jit(nets.generate)
        self._discriminate_jit = jax.jit(nets.discriminate)
        self._d_loss_jit = jax.jit(jax.value_and_grad(nets.d_loss, argnums=(0, 1)))
        self._g_loss_jit = jax.jit(jax.value_and_grad(nets.g_loss))
        self._d_grads_jit = jax.jit(lambda c, x, z, real_noise, fake_noise, mix, real_labels, fake_labels:
                                    nets.d_value_and_grad(c.d, c.g, x, z, real_noise, fake_noise, mix, real_labels,
                                                          fake_labels))
        self._g_grads_jit = jax.jit(lambda c, z, fake_noise, labels: nets.g_value_and_grad(c.g, c.d, z, fake_noise,
                                                                                           labels))
        self._round_jit = jax.jit(self._traced_round, donate_argnums=0, out_shardings=rep)
        self._rounds_jit = jax.jit(self._traced_rounds, donate_argnums=0, out_shardings=rep)

    # ----- the compiled training programs (pure functions of the carry) -----

    def _d_update(self, c: Carry, batch):
        """One D update. batch: (x_real, z, real_noise, fake_noise, mix, real_labels, fake_labels), noise
        already scaled and any of the last five None."""
        (loss, (real_out, fake_out, penalty)), grads = self._nets.d_value_and_grad(c.d, c.g, *batch)
        updates, d_opt = self._d_tx.update(grads, c.d_opt, c.d)
        d = optax.apply_updates(c.d, updates)
        if self.config.clip_value is not None:  # WGAN: every critic parameter into [-c, c]
            clip = self.config.clip_value
            d = jax.tree.map(lambda p: jnp.clip(p, -clip, clip), d)
        share = functools.partial(jnp.mean, dtype=self._np_dtype)  # of a boolean array (JAX's default: float32)
        metrics = [loss, share(real_out > 0), share(fake_out < 0),
                   jnp.mean(real_out) - jnp.mean(fake_out), optax.tree.norm(grads), penalty]
        return c._replace(d=d, d_opt=d_opt, d_count=c.d_count + 1), self._stack(metrics)

    def _g_update(self, c: Carry, xs):
        """One G update. xs: z, or (z, fake_noise) or (z, fake_noise, labels), the noise already scaled; the
        noise and the labels may be None."""
        z, fake_noise, labels = (*xs, None, None)[:3] if isinstance(xs, tuple) else (xs, None, None)
        (loss, _), grads = self._nets.g_value_and_grad(c.g, c.d, z, fake_noise, labels)
        updates, g_opt = self._g_tx.update(grads, c.g_opt, c.g)
        g = optax.apply_updates(c.g, updates)
        return c._replace(g=g, g_opt=g_opt, g_count=c.g_count + 1), self._stack([loss, optax.tree.norm(grads)])

    def _stack(self, values):
        return jnp.stack([jnp.asarray(v, dtype=self._np_dtype) for v in values])

    def _round(self, c: Carry, real, z_d, z_g, sigma=None, extras=None):
        """k D updates (G frozen), then m G updates (D frozen). Returns (carry, the 8 METRICS).

        sigma: this round's instance-noise scale (a scalar array; None without instance noise).
        extras: {name: array} of StepInputs' optional arrays (standard normal noise, mix, int32 labels), or None."""
        extras = extras or {}
        real = self._constrain(real, P(None, "data", None))

        def scaled(name):  # sigma * noise for every update of the round at once: (steps, B, data_size)
            return None if name not in extras else sigma * extras[name]

        mix = extras.get("mix")
        d_xs = (real, z_d, scaled("noise_real"), scaled("noise_fake"), mix, extras.get("labels_real"),
                extras.get("labels_fake"))
        c, d_metrics = jax.lax.scan(self._d_update, c, d_xs)
        g_xs = (z_g, scaled("noise_g"), extras.get("labels_g")) if extras else z_g  # plain: as it always was
        c, g_metrics = jax.lax.scan(self._g_update, c, g_xs)
        return c, jnp.concatenate([d_metrics[-1], g_metrics[-1]])  # figures of the last D and last G update

    def _traced_round(self, c, real, z_d, z_g, sigmas=None, extras=None):
        """One round; sigmas: (1,) its instance-noise scale, or None."""
        self.traces["train_step"] += 1  # runs only while JAX traces
        return self._round(c, real, z_d, z_g, None if sigmas is None else sigmas[0], extras)

    def _traced_rounds(self, c, data, labels, index, z_d, z_g, n, sigmas=None, extras=None):
        """Rounds 0..n-1 of a padded chunk (capacity = index.shape[0] >= n; the padding never runs).

        labels (N,): every data row's class (a conditional GAN), or None. sigmas (capacity,): each round's
        instance-noise scale; extras: {name: (capacity, ...)}; both optional."""
        self.traces["train_rounds"] += 1  # runs only while JAX traces: once per capacity bucket

        def run(carry, xs):
            idx, zd, zg, sigma, extra = xs
            real = jnp.take(data, idx, axis=0)  # this round's real batches: (k, B, data_size)
            if labels is not None:  # and their classes: (k, B)
                extra = {**extra, "labels_real": jnp.take(labels, idx, axis=0)}
            return self._round(carry, real, zd, zg, sigma, extra)

        def skip(carry, xs):  # a padding round: nothing is computed, the carry passes through
            return carry, jnp.full((len(METRICS),), jnp.nan, dtype=self._np_dtype)

        def one_round(carry, xs):
            r, *inputs = xs
            return jax.lax.cond(r < n, run, skip, carry, tuple(inputs))  # n is a runtime value

        rounds = jnp.arange(index.shape[0], dtype=jnp.int32)
        # (carry, metrics table (capacity, 8))
        return jax.lax.scan(one_round, c, (rounds, index, z_d, z_g, sigmas, extras))

    def _constrain(self, x, spec):
        if len(self.devices) == 1:
            return x
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

    # ----- moving arrays in and out -----

    def _require(self) -> Carry:
        if self._carry is None:
            raise RuntimeError("the backend has no state yet: call init(seed) or load_state(...) first")
        return self._carry

    def _put_batch(self, x: np.ndarray, axis: int, *, strict: bool = False, dtype=None):
        """x on the mesh, split along `axis` (the batch) over the devices when it divides evenly."""
        x = np.asarray(x, dtype=dtype or self._np_dtype)
        n = len(self.devices)
        if n > 1 and x.shape[axis] % n == 0:
            spec = [None] * x.ndim
            spec[axis] = "data"
            return jax.device_put(x, NamedSharding(self.mesh, P(*spec)))
        if n > 1 and strict:
            raise ValueError(f"batch size {x.shape[axis]} does not divide evenly over the {n} devices of the "
                             f"data-parallel mesh; use a multiple of {n}")
        return jax.device_put(x, self._replicated)

    def _ordered64(self, tree: dict, names) -> dict[str, np.ndarray]:
        host = jax.device_get(tree)
        return {name: np.array(host[name], dtype=np.float64) for name in names}

    # ----- state in and out -----

    @_scoped
    def load_state(self, params, d_opt_state, g_opt_state, step):
        spec = self.config.spec
        for what, count in zip("DG", self.check_state(params, d_opt_state, g_opt_state, step), strict=True):
            if count > optimizers.MAX_STEP:  # optax counts updates in an int32
                raise ValueError(f"{what} optimizer state step {count} exceeds {optimizers.MAX_STEP}")
        g_shapes, d_shapes = mlp.param_shapes(spec.generator, "G"), mlp.param_shapes(spec.discriminator, "D")
        g = {k: jnp.asarray(np.asarray(params[k], dtype=self._np_dtype)) for k in g_shapes}
        d = {k: jnp.asarray(np.asarray(params[k], dtype=self._np_dtype)) for k in d_shapes}
        d_opt, d_count = optimizers.import_state(self.config.d_optimizer, self._d_tx, d, d_opt_state, self._np_dtype)
        g_opt, g_count = optimizers.import_state(self.config.g_optimizer, self._g_tx, g, g_opt_state, self._np_dtype)
        self._carry = jax.device_put(Carry(g, d, d_opt, g_opt, d_count, g_count), self._replicated)
        self._step = int(step)

    @_scoped
    def export_params(self):
        c = self._require()
        return {**self._ordered64(c.g, self._g_names), **self._ordered64(c.d, self._d_names)}

    @_scoped
    def export_optimizer_state(self):
        c = jax.device_get(self._require())
        return (optimizers.export_state(self.config.d_optimizer, c.d_opt, c.d_count, self._d_names),
                optimizers.export_state(self.config.g_optimizer, c.g_opt, c.g_count, self._g_names))

    @property
    def step(self):
        self._require()
        return self._step

    # ----- forward passes, losses and gradients (nothing changes) -----

    def _query_labels(self, labels, batch: int, what: str):
        """A query's class labels (B,) on the mesh as int32 (checked by Backend.check_labels); None if unconditional."""
        labels = self.check_labels(labels, batch, what)
        return None if labels is None else self._put_batch(labels, 0, dtype=np.int32)

    @_scoped
    def generate(self, z, labels=None):
        mlp.check_input(z, self.config.spec.z_size, "z")
        labels = self._query_labels(labels, len(z), "generate labels")
        return np.asarray(self._generate_jit(self._require().g, self._put_batch(z, 0), labels), dtype=self._np_dtype)

    @_scoped
    def discriminate(self, x, labels=None):
        mlp.check_input(x, self.config.spec.data_size, "x")
        labels = self._query_labels(labels, len(x), "discriminate labels")
        return np.asarray(self._discriminate_jit(self._require().d, self._put_batch(x, 0), labels),
                          dtype=self._np_dtype)

    @staticmethod
    def _check_outputs(out, what):
        if not isinstance(out, np.ndarray) or not np.issubdtype(out.dtype, np.floating):
            raise TypeError(f"{what} must be a floating-point numpy array")
        if out.ndim != 2 or out.shape[1] != 1 or out.shape[0] == 0:
            raise ValueError(f"{what} must have shape (batch > 0, 1), got {out.shape}")

    @_scoped
    def d_loss(self, real_out, fake_out):
        self._check_outputs(real_out, "real_out")
        self._check_outputs(fake_out, "fake_out")
        loss, (grad_real, grad_fake) = self._d_loss_jit(self._put_batch(real_out, 0), self._put_batch(fake_out, 0))
        return float(loss), np.asarray(grad_real, dtype=self._np_dtype), np.asarray(grad_fake, dtype=self._np_dtype)

    @_scoped
    def g_loss(self, fake_out):
        self._check_outputs(fake_out, "fake_out")
        loss, grad = self._g_loss_jit(self._put_batch(fake_out, 0))
        return float(loss), np.asarray(grad, dtype=self._np_dtype)

    def _optional_batch(self, x, shape, what):
        """An optional per-sample array of the queries (noise, mix) on the mesh, checked against `shape`."""
        if x is None:
            return None
        mlp.check_input(x, shape[1], what)
        if x.shape != shape:
            raise ValueError(f"{what} must have shape {shape}, got {x.shape}")
        return self._put_batch(x, 0)

    @_scoped
    def d_grads(self, x_real, z, *, real_noise=None, fake_noise=None, mix=None, real_labels=None, fake_labels=None):
        spec = self.config.spec
        mlp.check_input(x_real, spec.data_size, "x_real")
        mlp.check_input(z, spec.z_size, "z")
        real_labels = self._query_labels(real_labels, len(x_real), "real_labels")
        fake_labels = self._query_labels(fake_labels, len(z), "fake_labels")
        real_noise = self._optional_batch(real_noise, x_real.shape, "real_noise")
        fake_noise = self._optional_batch(fake_noise, (len(z), spec.data_size), "fake_noise")
        if self.config.needs_mix:
            if mix is None:
                raise ValueError("the wgan-gp penalty needs the interpolation weights `mix` (B, 1)")
            if len(x_real) != len(z):
                raise ValueError(f"wgan-gp interpolates real and fake samples pairwise: the batches must have the "
                                 f"same size, got {len(x_real)} and {len(z)}")
            mix = self._optional_batch(mix, (len(x_real), 1), "mix")
        else:
            mix = None  # only wgan-gp reads it (as in the reference)
        (loss, _), grads = self._d_grads_jit(self._require(), self._put_batch(x_real, 0), self._put_batch(z, 0),
                                             real_noise, fake_noise, mix, real_labels, fake_labels)
        return float(loss), self._ordered64(grads, self._d_names)

    @_scoped
    def g_grads(self, z, *, fake_noise=None, labels=None):
        mlp.check_input(z, self.config.spec.z_size, "z")
        fake_noise = self._optional_batch(fake_noise, (len(z), self.config.spec.data_size), "fake_noise")
        labels = self._query_labels(labels, len(z), "labels")
        (loss, _), grads = self._g_grads_jit(self._require(), self._put_batch(z, 0), fake_noise, labels)
        return float(loss), self._ordered64(grads, self._g_names)

    # ----- training -----

    def _metrics(self, table: np.ndarray) -> list[StepMetrics]:
        """StepMetrics from an (n, 8) array of METRICS, for the n rounds after self._step."""
        wgan = self.config.spec.loss == "wasserstein"
        nan = float("nan")
        out = []
        for r, row in enumerate(np.asarray(table, dtype=np.float64)):
            v = dict(zip(METRICS, map(float, row), strict=True))
            out.append(StepMetrics(step=self._step + r + 1, d_loss=v["d_loss"], g_loss=v["g_loss"],
                                   d_acc_real=nan if wgan else v["d_acc_real"],
                                   d_acc_fake=nan if wgan else v["d_acc_fake"],
                                   critic_gap=v["critic_gap"] if wgan else nan,
                                   d_grad_norm=v["d_grad_norm"], g_grad_norm=v["g_grad_norm"],
                                   d_penalty=v["d_penalty"]))
        return out

    @_scoped
    def train_step(self, inputs: StepInputs) -> StepMetrics:
        if not isinstance(inputs, StepInputs):
            raise TypeError(f"train_step takes StepInputs, got {type(inputs).__name__}")
        inputs.check(self.config)
        carry = self._require()
        real, z_d, z_g = (self._put_batch(a, 1, strict=True) for a in (inputs.real, inputs.z_d, inputs.z_g))
        extras = {name: self._put_batch(getattr(inputs, name), 1, strict=True, dtype=self._extra_dtype(name))
                  for name in self._extra_names() + self._label_names(LABELS)}
        self._carry, metrics = self._round_jit(carry, real, z_d, z_g, self._sigmas(1), extras or None)
        [result] = self._metrics(np.asarray(metrics)[None])
        self._step += 1
        return result

    def _extra_names(self) -> list[str]:
        """The StepInputs extras this config uses (the others are ignored, as by the reference)."""
        return [name for name in EXTRAS
                if (name == "mix" and self.config.needs_mix) or (name != "mix" and self.config.needs_noise)]

    def _label_names(self, names) -> list[str]:
        """The label arrays among `names` this config uses: all of them for a conditional GAN, none otherwise."""
        return list(names) if self.config.needs_labels else []

    def _extra_dtype(self, name: str):
        return np.int32 if name.startswith("labels") else None

    def _sigmas(self, n: int):
        """Instance-noise scales of the n rounds after self._step, (n,) on the device; None without noise."""
        if not self.config.needs_noise:
            return None
        sigmas = np.array([self.config.noise_scale(self._step + r) for r in range(n)], dtype=self._np_dtype)
        return jax.device_put(sigmas, self._replicated)

    @_scoped
    def set_data(self, data: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Put the training set (N, data_size) on the device(s), replicated, for train_rounds; a conditional
        GAN's labels (N,) (every row's class) go there too, as int32."""
        mlp.check_input(data, self.config.spec.data_size, "data")
        labels = self.check_data_labels(labels, len(data))  # raises before anything changes
        self._data = jax.device_put(np.asarray(data, dtype=self._np_dtype), self._replicated)
        self._labels = None if labels is None else jax.device_put(np.asarray(labels, dtype=np.int32),
                                                                  self._replicated)

    @_scoped
    def train_rounds(self, index: np.ndarray, z_d: np.ndarray, z_g: np.ndarray, **extras) -> list[StepMetrics]:
        if self._data is None:
            raise RuntimeError("call set_data(data) before train_rounds")
        carry = self._require()
        n = self.check_chunk(index, z_d, z_g, self._data.shape[0], **extras)
        if n == 0:
            return []
        capacity = _bucket(n)
        extras = {name: self._put_batch(_pad(extras[name], capacity), 2, strict=True, dtype=self._extra_dtype(name))
                  for name in self._extra_names() + self._label_names(("labels_fake", "labels_g"))}
        self._carry, table = self._rounds_jit(carry, self._data, self._labels,
                                              self._put_batch(_pad(index, capacity), 2, strict=True, dtype=np.int32),
                                              self._put_batch(_pad(z_d, capacity), 2, strict=True),
                                              self._put_batch(_pad(z_g, capacity), 2, strict=True),
                                              jnp.asarray(n, dtype=jnp.int32), self._sigmas(capacity), extras or None)
        metrics = self._metrics(np.asarray(table)[:n])  # one transfer per chunk
        self._step += n
        return metrics
