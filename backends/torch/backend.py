"""The PyTorch backend: torch.nn networks, autograd, torch.optim, optional torch.compile, bf16 autocast and DDP.

One round of training (reference/train.py) is k D updates then m G updates:

    D update: x_fake = G(z) under torch.no_grad() (G's output is a constant: no graph, no gradient into G),
              D reads the real and the fake batch, loss.backward() fills D's .grad only,
              D's optimizer steps, then every D parameter is clamped to [-c, c] when clip_value is set.
    G update: D's parameters are frozen (requires_grad False) for the duration, so backward flows through
              D into x_fake = G(z) and G's parameters, D accumulates nothing and D's optimizer never steps:
              D is bitwise unchanged.

Remedies for failure to converge (reference/gan.py, reference/penalty.py):

    instance noise    sigma = config.noise_scale(step) for the round after `step` completed rounds; the round's
                      standard normal draws times sigma are added to the real and the fake batch of every D
                      update and to G(z) in every G update (the noise is a constant: nothing flows into it).
    gradient penalty  added to D's loss in every D update, on the (noisy) batches D sees. The per-sample input
                      gradients g_n come from torch.autograd.grad(D(x).sum(), x, create_graph=True) (D has one
                      output, so row n of that gradient is dD(x_n)/dx_n), and loss.backward() then differentiates
                      through that backward pass (double backprop). The penalty runs eagerly even with
                      compile=True: AOTAutograd's compiled backward cannot itself be differentiated.

Conditional GANs (spec.num_classes = K > 0, reference/gan.py): a class label y is appended to G's and D's inputs
as a one-hot row of the backend's dtype (a lookup in a K x K identity matrix kept on the device): G reads
[z, onehot(y)], D reads [x (+ noise), onehot(y)]. The label columns are constants, so in the G step only the
first data_size columns of D's input gradient reach G, as autograd does by itself through torch.cat.

`train_rounds` runs a whole chunk of rounds on the device: the chunk's row indices and noise go over in a
single host-to-device copy, the real batches are gathered from the device-resident dataset, and every
round's metrics stay on the device until one copy back at the end of the chunk.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from reference import mlp
from reference.train import StepInputs, StepMetrics, TrainConfig

from ..interface import ALL_FEATURES, CONDITIONAL, Backend
from . import convert, ddp, nets

# Columns of a round's metrics vector. The first six are batch means (averaged over DDP ranks: every penalty is
# a mean over its batch, or a sum of such means, over shards of equal size); the grad norms are computed from
# gradients that DDP has already averaged, so they are global as they stand.
_METRICS = ("d_loss", "g_loss", "d_acc_real", "d_acc_fake", "critic_gap", "d_penalty", "d_grad_norm", "g_grad_norm")
_N_MEANS = 6
_EXTRAS = ("noise_real", "noise_fake", "noise_g", "mix")  # train_rounds' optional inputs, in upload order
_LABELS = ("labels_fake", "labels_g")  # a conditional GAN's train_rounds inputs (the real batches' come with set_data)


def resolve_device(device) -> torch.device:
    """None -> "cuda" if available else "cpu"; otherwise "cpu", "cuda" or "cuda:N", checked."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; choose 'cpu', 'cuda', 'cuda:N' or None") from None
    else:
        raise TypeError(f"device must be a string like 'cpu' or 'cuda', or None; got {type(device).__name__}")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose 'cpu', 'cuda', 'cuda:N' or None")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device "
                               f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return resolved


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Turn off requires_grad on every parameter of `module` for the duration (the primer's freezing)."""
    params = list(module.parameters())
    previous = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, previous, strict=True):
            p.requires_grad_(flag)


class TorchBackend(Backend):
    """One GAN in torch. See the module docstring; constructor options:

    dtype:   "float64" or "float32" (parameters, activations and optimizer buffers).
    device:  "cpu", "cuda", "cuda:N" or None (CUDA if available, else CPU). Under torchrun with CUDA each
             process uses cuda:LOCAL_RANK.
    compile: torch.compile the D-step and G-step objectives (forward and, through AOTAutograd, backward).
             A gradient penalty is computed eagerly beside the compiled objective (see the module docstring).
    amp:     bf16 autocast for the forward passes (CUDA only, dtype float32); losses are computed in float32.
             Not with a gradient penalty (refused: its double backward is not validated under autocast).
    foreach, fused: passed to torch.optim (None: torch's choice); every choice computes the same update.
    """

    name = "torch"
    features = ALL_FEATURES | {CONDITIONAL}

    def __init__(self, config: TrainConfig, *, dtype: str = "float64", device: str | None = None,
                 compile: bool = False, amp: bool = False, foreach: bool | None = None,
                 fused: bool | None = None):
        super().__init__(config, dtype=dtype, device=device)
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a reference.train.TrainConfig, got {type(config).__name__}")
        requested = resolve_device(device)
        if amp:
            if config.penalty is not None:  # checked first: the same answer on every device
                raise ValueError(f"amp=True with a gradient penalty ({config.penalty.kind}) is not supported: the "
                                 f"penalty's double backward has not been validated under bf16 autocast; "
                                 f"use amp=False")
            if requested.type != "cuda":
                raise ValueError(f"amp=True (bf16 autocast) is supported on CUDA only, and this backend runs on "
                                 f"{requested.type!r}; use amp=False on the CPU")
            if dtype != "float32":
                raise ValueError(f"amp=True needs dtype='float32' (autocast leaves float64 alone), got {dtype!r}")
        self._dist = ddp.setup(requested.type)
        if self._dist.distributed and requested.type == "cuda" and requested.index is None:
            requested = torch.device("cuda", self._dist.local_rank)
        self._device = requested
        self.device = str(requested)
        self.rank, self.world_size = self._dist.rank, self._dist.world_size
        self.compile, self.amp = bool(compile), bool(amp)
        self._dtype = getattr(torch, dtype)
        self._loss = config.spec.loss

        self.G = nets.MLP(config.spec.generator, self._dtype, self._device)
        self.D = nets.MLP(config.spec.discriminator, self._dtype, self._device)
        self._nets = {"G": self.G, "D": self.D}
        self._names = {"G": nets.param_names(config.spec.generator, "G"),
                       "D": nets.param_names(config.spec.discriminator, "D")}
        # The optimizers see the parameters in interchange order (that is the order of .parameters()).
        self._opt_specs = {"D": config.d_optimizer, "G": config.g_optimizer}
        self._opts = {net: nets.make_optimizer(self._opt_specs[net],
                                               [convert.parameter(self._nets, n) for n in self._names[net]],
                                               foreach=foreach, fused=fused)
                      for net in ("D", "G")}
        # The modules the training steps run through: DDP wrappers when distributed, else the modules.
        self._G_train = ddp.wrap(self.G, self._dist, self._device)
        self._D_train = ddp.wrap(self.D, self._dist, self._device)

        self._d_objective, self._g_objective = _d_objective, _g_objective
        if self.compile:
            self._d_objective = torch.compile(_d_objective)
            self._g_objective = torch.compile(_g_objective)

        self._has_state = False
        self._step = 0
        self._opt_steps = {"D": 0, "G": 0}
        self._data_t = None
        self._data_onehot_t = None  # a conditional GAN's one-hot labels of the rows given to set_data (N, K)
        k = config.spec.num_classes
        self._eye = torch.eye(k, dtype=self._dtype, device=self._device) if k else None  # one-hot lookup table

    # ----- helpers -----

    def _autocast(self):
        return _autocast(self.amp)

    def _require_state(self):
        if not self._has_state:
            raise RuntimeError("the backend has no state yet: call init(seed) or load_state(...) first")

    def _tensor(self, x) -> torch.Tensor:
        """A NumPy array (any float dtype) as a tensor of the backend's dtype on its device (a copy)."""
        return torch.as_tensor(np.asarray(x), device=self._device).to(self._dtype, copy=True)

    def _out(self, t: torch.Tensor) -> np.ndarray:
        """A result tensor as a NumPy array of the backend's dtype (a copy)."""
        return t.detach().to(device="cpu", dtype=self._dtype, copy=True).numpy()

    def _one_hot(self, labels, batch: int, what: str) -> torch.Tensor | None:
        """Labels (batch,) ints as one-hot rows (batch, K) of the backend's dtype on its device, checked by
        Backend.check_labels; None for an unconditional GAN (which refuses labels)."""
        labels = self.check_labels(labels, batch, what)
        return None if labels is None else self._eye[torch.as_tensor(labels, device=self._device, dtype=torch.int64)]

    def close(self) -> None:
        """Leave the process group if this backend joined it (under torchrun); a no-op otherwise."""
        ddp.teardown(self._dist)

    # ----- state in and out -----

    def load_state(self, params, d_opt_state, g_opt_state, step):
        d_step, g_step = self.check_state(params, d_opt_state, g_opt_state, step)
        opt_steps = {"D": d_step, "G": g_step}
        with torch.no_grad():
            for net in ("G", "D"):
                for name in self._names[net]:
                    convert.parameter(self._nets, name).copy_(
                        convert.to_torch(name, params[name], self._dtype, self._device))
        for net, state in (("D", d_opt_state), ("G", g_opt_state)):
            opt = self._opts[net]
            opt.load_state_dict(convert.optimizer_state_dict(opt, self._opt_specs[net], self._names[net], state,
                                                             self._dtype, self._device))
        self._opt_steps = opt_steps
        self._step = int(step)
        self._has_state = True

    def export_params(self):
        self._require_state()
        return {name: convert.to_numpy(name, convert.parameter(self._nets, name))
                for net in ("G", "D") for name in self._names[net]}

    def export_optimizer_state(self):
        self._require_state()
        d_state, g_state = (convert.export_optimizer_state(self._opts[net], self._opt_specs[net], self._nets,
                                                           self._names[net], self._opt_steps[net])
                            for net in ("D", "G"))
        return d_state, g_state

    @property
    def step(self):
        self._require_state()
        return self._step

    # ----- forward passes -----

    def generate(self, z, labels=None):
        self._require_state()
        mlp.check_input(z, self.config.spec.z_size, "z")
        one_hot = self._one_hot(labels, len(z), "generate")
        with torch.no_grad(), self._autocast():
            return self._out(self.G(_join(self._tensor(z), one_hot)))

    def discriminate(self, x, labels=None):
        self._require_state()
        mlp.check_input(x, self.config.spec.data_size, "x")
        one_hot = self._one_hot(labels, len(x), "discriminate")
        with torch.no_grad(), self._autocast():
            return self._out(self.D(_join(self._tensor(x), one_hot)))

    # ----- losses on D's outputs -----

    def _logits(self, out, what: str) -> torch.Tensor:
        mlp.check_input(out, 1, what)
        return self._tensor(out).requires_grad_(True)

    def d_loss(self, real_out, fake_out):
        real, fake = self._logits(real_out, "real_out"), self._logits(fake_out, "fake_out")
        loss = nets.d_loss(self._loss, real, fake)
        grad_real, grad_fake = torch.autograd.grad(loss, [real, fake])
        return float(loss.detach()), self._out(grad_real), self._out(grad_fake)

    def g_loss(self, fake_out):
        fake = self._logits(fake_out, "fake_out")
        loss = nets.g_loss(self._loss, fake)
        (grad,) = torch.autograd.grad(loss, [fake])
        return float(loss.detach()), self._out(grad)

    # ----- the D step and the G step, without updating -----

    def _optional(self, x, what: str, shape: tuple) -> torch.Tensor | None:
        """An optional per-sample input (noise, mix) as a tensor, checked to have `shape`; None stays None."""
        if x is None:
            return None
        array = np.asarray(x)
        if not np.issubdtype(array.dtype, np.floating) or array.shape != shape:
            raise ValueError(f"{what} must be a floating-point array of shape {shape}, got "
                             f"{array.dtype} {array.shape}")
        return self._tensor(array)

    def d_grads(self, x_real, z, *, real_noise=None, fake_noise=None, mix=None, real_labels=None, fake_labels=None):
        self._require_state()
        spec = self.config.spec
        mlp.check_input(x_real, spec.data_size, "x_real")
        mlp.check_input(z, spec.z_size, "z")
        real_noise = self._optional(real_noise, "real_noise", np.shape(x_real))
        fake_noise = self._optional(fake_noise, "fake_noise", (len(z), spec.data_size))
        mix = self._optional(mix, "mix", (len(x_real), 1))
        real_onehot = self._one_hot(real_labels, len(x_real), "real_labels")
        fake_onehot = self._one_hot(fake_labels, len(z), "fake_labels")
        loss, _, _, _ = self._d_loss(self.D, self._tensor(x_real), self._tensor(z), real_noise, fake_noise, mix,
                                     real_onehot, fake_onehot)
        grads = torch.autograd.grad(loss, [convert.parameter(self._nets, n) for n in self._names["D"]])
        return float(loss.detach()), {n: convert.to_numpy(n, g) for n, g in zip(self._names["D"], grads, strict=True)}

    def g_grads(self, z, *, fake_noise=None, labels=None):
        self._require_state()
        mlp.check_input(z, self.config.spec.z_size, "z")
        fake_noise = self._optional(fake_noise, "fake_noise", (len(z), self.config.spec.data_size))
        one_hot = self._one_hot(labels, len(z), "labels")
        with frozen(self.D):
            loss, _ = self._g_objective(self.G, self.D, self._tensor(z), fake_noise, self._loss, self._dtype,
                                        self.amp, one_hot)
            grads = torch.autograd.grad(loss, [convert.parameter(self._nets, n) for n in self._names["G"]])
        return float(loss.detach()), {n: convert.to_numpy(n, g) for n, g in zip(self._names["G"], grads, strict=True)}

    def _d_loss(self, D, real, z, real_noise, fake_noise, mix, real_onehot=None, fake_onehot=None):
        """D's whole loss (the objective plus the configured penalty) through the module D (bare or DDP).
        real_onehot / fake_onehot: a conditional GAN's one-hot labels (B, K), else None.
        Returns (loss, real_out, fake_out, penalty), all but the loss detached; penalty is None without one."""
        loss, real_out, fake_out, real_seen, fake_seen = self._d_objective(
            self.G, D, real, z, real_noise, fake_noise, self._loss, self._dtype, self.amp, real_onehot, fake_onehot)
        pen = self.config.penalty
        if pen is None:
            return loss, real_out, fake_out, None
        if real_onehot is not None:  # TrainConfig refuses this combination; kept as a guard
            raise ValueError("gradient penalties are not implemented for conditional GANs")
        if pen.kind == "wgan-gp":
            if mix is None:
                raise ValueError("the wgan-gp penalty needs the interpolation weights `mix` (B, 1)")
            if real_seen.shape != fake_seen.shape:
                raise ValueError(f"wgan-gp interpolates real and fake samples pairwise: the batches must have the "
                                 f"same shape, got {tuple(real_seen.shape)} and {tuple(fake_seen.shape)}")
        value = pen.weight * gradient_penalty(D, pen.kind, real_seen, fake_seen, mix)
        return loss + value, real_out, fake_out, value.detach()

    # ----- training -----

    def _d_update(self, real: torch.Tensor, z: torch.Tensor, real_noise=None, fake_noise=None,
                  mix=None, real_onehot=None, fake_onehot=None) -> list[torch.Tensor]:
        """One D update; returns [loss, acc_real, acc_fake, critic_gap, penalty, grad_norm] as 0-d device tensors.
        real_noise / fake_noise: instance noise already scaled by sigma (or None); mix: WGAN-GP's weights;
        real_onehot / fake_onehot: a conditional GAN's one-hot labels (or None)."""
        opt = self._opts["D"]
        opt.zero_grad(set_to_none=True)
        loss, real_out, fake_out, pen = self._d_loss(self._D_train, real, z, real_noise, fake_noise, mix,
                                                     real_onehot, fake_onehot)
        loss.backward()  # D's .grad only: G's output was computed without a graph
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.D.parameters()])
        opt.step()
        self._opt_steps["D"] += 1
        if self.config.clip_value is not None:
            c = self.config.clip_value
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-c, c)
        acc_real = (real_out > 0).to(self._dtype).mean()
        acc_fake = (fake_out < 0).to(self._dtype).mean()
        gap = real_out.mean() - fake_out.mean()
        pen = torch.zeros((), dtype=self._dtype, device=self._device) if pen is None else pen
        return [loss.detach(), acc_real, acc_fake, gap, pen, grad_norm]

    def _g_update(self, z: torch.Tensor, fake_noise=None, one_hot=None) -> list[torch.Tensor]:
        """One G update with D frozen (D sees G(z) + fake_noise, with the one-hot labels G generated for, if any);
        returns [loss, grad_norm] as 0-d device tensors."""
        opt = self._opts["G"]
        opt.zero_grad(set_to_none=True)
        with frozen(self.D):
            loss, _ = self._g_objective(self._G_train, self.D, z, fake_noise, self._loss, self._dtype, self.amp,
                                        one_hot)
            loss.backward()  # through D (frozen: no .grad) into G
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.G.parameters()])
        opt.step()
        self._opt_steps["G"] += 1
        return [loss.detach(), grad_norm]

    def _round(self, real: torch.Tensor, z_d: torch.Tensor, z_g: torch.Tensor, extras: dict) -> torch.Tensor:
        """One round on device tensors real (k, b, data), z_d (k, b, z), z_g (m, b, z) and the config's extras
        (noise_real, noise_fake (k, b, data), noise_g (m, b, data): N(0, 1); mix (k, b, 1); a conditional GAN's
        one-hot labels labels_real, labels_fake (k, b, K) and labels_g (m, b, K)); no host sync.
        Returns the round's metrics vector (columns _METRICS), on the device."""
        sigma = self.config.noise_scale(self._step)  # this round's instance noise scale

        def scaled(name, i):
            return sigma * extras[name][i] if self.config.needs_noise else None

        def row(name, i):
            return extras[name][i] if name in extras else None

        for i in range(self.config.d_steps):
            d_loss, acc_real, acc_fake, gap, pen, d_norm = self._d_update(
                real[i], z_d[i], scaled("noise_real", i), scaled("noise_fake", i), row("mix", i),
                row("labels_real", i), row("labels_fake", i))
        for i in range(self.config.g_steps):
            g_loss, g_norm = self._g_update(z_g[i], scaled("noise_g", i), row("labels_g", i))
        self._step += 1
        return torch.stack([d_loss, g_loss, acc_real, acc_fake, gap, pen, d_norm.to(self._dtype),
                            g_norm.to(self._dtype)])

    def _metrics(self, rows: torch.Tensor, first_step: int) -> list[StepMetrics]:
        """(n, len(_METRICS)) device metrics -> StepMetrics, with one all-reduce (DDP) and one copy to the host."""
        if self._dist.distributed:
            rows = torch.cat([ddp.mean_over_ranks(rows[:, :_N_MEANS], self._dist), rows[:, _N_MEANS:]], dim=1)
        host = rows.detach().to(device="cpu", dtype=torch.float64).numpy()
        wgan = self._loss == "wasserstein"
        result = []
        for r, row in enumerate(host):
            values = dict(zip(_METRICS, (float(v) for v in row), strict=True))
            if wgan:
                values["d_acc_real"] = values["d_acc_fake"] = float("nan")
            else:
                values["critic_gap"] = float("nan")
            result.append(StepMetrics(step=first_step + r + 1, **values))
        return result

    def train_step(self, inputs: StepInputs) -> StepMetrics:
        self._require_state()
        if not isinstance(inputs, StepInputs):
            raise TypeError(f"train_step takes a StepInputs, got {type(inputs).__name__}")
        inputs.check(self.config)
        real = ddp.shard(inputs.real, self._dist, 1, "StepInputs.real")
        z_d = ddp.shard(inputs.z_d, self._dist, 1, "StepInputs.z_d")
        z_g = ddp.shard(inputs.z_g, self._dist, 1, "StepInputs.z_g")
        extras = {name: self._tensor(ddp.shard(getattr(inputs, name), self._dist, 1, f"StepInputs.{name}"))
                  for name in self._extra_names()}
        if self.config.needs_labels:  # checked by inputs.check: (k or m, B) ints in [0, K); one-hot on the device
            for name in ("labels_real", *_LABELS):
                labels = ddp.shard(getattr(inputs, name), self._dist, 1, f"StepInputs.{name}")
                extras[name] = self._eye[torch.as_tensor(np.asarray(labels, dtype=np.int64), device=self._device)]
        first = self._step
        row = self._round(self._tensor(real), self._tensor(z_d), self._tensor(z_g), extras)
        return self._metrics(row[None], first)[0]

    def set_data(self, data: np.ndarray, labels: np.ndarray | None = None) -> None:
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != self.config.spec.data_size \
                or len(data) == 0:
            raise ValueError(f"data must be a numpy array of shape (N > 0, {self.config.spec.data_size}), got "
                             f"{getattr(data, 'shape', type(data).__name__)}")
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"data must be a floating-point array, got dtype {data.dtype}")
        if not np.all(np.isfinite(data)):
            raise ValueError("data contains NaN or Inf")
        labels = self.check_data_labels(labels, len(data))  # everything is checked before anything changes
        self._labels = labels
        self._data_t = self._tensor(data)
        self._data_onehot_t = None if labels is None else \
            self._eye[torch.as_tensor(np.asarray(labels, dtype=np.int64), device=self._device)]

    def _extra_names(self) -> list[str]:
        """The optional inputs this config uses, in _EXTRAS order."""
        wanted = {"noise_real", "noise_fake", "noise_g"} if self.config.needs_noise else set()
        if self.config.needs_mix:
            wanted.add("mix")
        return [name for name in _EXTRAS if name in wanted]

    def _upload(self, index: np.ndarray, *arrays: np.ndarray) -> list[torch.Tensor]:
        """index and the other arrays (z_d, z_g, the extras) in ONE host-to-device copy: their bytes packed in
        one buffer, viewed back on the device as int64 (index and every integer array, e.g. labels) and as the
        backend's dtype (every floating-point array). Returned in the order given."""
        np_dtype = np.dtype(self.dtype)
        given = [index, *arrays]
        is_int = [i == 0 or np.issubdtype(np.asarray(a).dtype, np.integer) for i, a in enumerate(given)]
        parts = [np.ascontiguousarray(a, dtype=np.int64 if whole else np_dtype) for a, whole in zip(given, is_int,
                                                                                                     strict=True)]
        order = [i for i in range(len(parts)) if is_int[i]] + [i for i in range(len(parts)) if not is_int[i]]
        packed = np.concatenate([parts[i].reshape(-1).view(np.uint8) for i in order])
        host = torch.from_numpy(packed)
        if self._device.type == "cuda":
            host = host.pin_memory()
        device_bytes = host.to(self._device, non_blocking=True)
        out, offset = [None] * len(parts), 0
        for i in order:
            part = parts[i]
            dtype = torch.int64 if is_int[i] else self._dtype
            out[i] = device_bytes[offset:offset + part.nbytes].view(dtype).view(part.shape)
            offset += part.nbytes  # every int64 first, then 8- or 4-byte floats: every view stays aligned
        return out

    def train_rounds(self, index, z_d, z_g, **extras):
        self._require_state()
        if self._data_t is None:
            raise RuntimeError("call set_data(data) before train_rounds")
        n = self.check_chunk(index, z_d, z_g, len(self._data_t), **extras)
        if n == 0:
            return []
        names = self._extra_names()
        if self.config.needs_labels:
            names += list(_LABELS)  # integer arrays: uploaded as int64 in the same copy, made one-hot on the device
        index = ddp.shard(index, self._dist, 2, "index")
        z_d = ddp.shard(z_d, self._dist, 2, "z_d")
        z_g = ddp.shard(z_g, self._dist, 2, "z_g")
        shards = [ddp.shard(extras[name], self._dist, 2, name) for name in names]
        index_t, z_d_t, z_g_t, *extra_t = self._upload(index, z_d, z_g, *shards)
        chunk = dict(zip(names, extra_t, strict=True))
        if self.config.needs_labels:
            chunk = {name: self._eye[t] if name in _LABELS else t for name, t in chunk.items()}  # (n, k|m, b, K)
            chunk["labels_real"] = self._data_onehot_t[index_t]  # the real rows' classes, (n, k, b, K)
        first = self._step
        rows = [self._round(self._data_t[index_t[r]], z_d_t[r], z_g_t[r],
                            {name: t[r] for name, t in chunk.items()}) for r in range(n)]
        return self._metrics(torch.stack(rows), first)


# ----- The two objectives (module-level functions so torch.compile can trace them) -----

def _autocast(amp: bool):
    """bf16 autocast on CUDA when amp is on; nothing otherwise."""
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def _join(x, one_hot):
    """A network's input: [x, one_hot] (B, n + K) for a conditional GAN, x itself when one_hot is None."""
    return x if one_hot is None else torch.cat([x, one_hot.to(x.dtype)], dim=1)


def _d_objective(G, D, real, z, real_noise, fake_noise, kind, dtype, amp, real_onehot=None, fake_onehot=None):
    """D's loss on a real batch and on G(z), with G's output a constant; D sees each batch plus its instance
    noise (already scaled, or None), with its one-hot labels appended for a conditional GAN (G generates for
    fake_onehot). Returns (loss, real_out, fake_out, real_seen, fake_seen), all but the
    loss detached; real_seen / fake_seen are the batches D read (the gradient penalty's inputs).

    D reads the two batches in two forward passes, as the reference does: each parameter's gradient is then
    the sum of a real-batch part and a fake-batch part, like the reference's, which keeps a gradient that is
    exactly 0 there (e.g. WGAN, a unit on the same side of its kink for every sample) exactly 0 here, instead
    of rounding noise that Adam's or RMSprop's normalisation would blow up to ~1e-10.
    """
    with _autocast(amp):
        with torch.no_grad():
            fake = G(_join(z, fake_onehot))
            if fake_noise is not None:
                fake = fake + fake_noise
            if real_noise is not None:
                real = real + real_noise
        real_out, fake_out = D(_join(real, real_onehot)).to(dtype), D(_join(fake, fake_onehot)).to(dtype)
    return nets.d_loss(kind, real_out, fake_out), real_out.detach(), fake_out.detach(), real, fake


def _g_objective(G, D, z, fake_noise, kind, dtype, amp, one_hot=None):
    """G's loss on D(G(z) + fake_noise) (noise already scaled, or None); the caller freezes D. A conditional G reads
    [z, one_hot] and D judges [G(...) + noise, one_hot]; the label columns are constants.
    Returns (loss, fake_out detached). The noise is a constant: dL/dG(z) = dL/d(G(z) + noise)."""
    with _autocast(amp):
        fake = G(_join(z, one_hot))
        if fake_noise is not None:
            fake = fake + fake_noise
        fake_out = D(_join(fake, one_hot)).to(dtype)
    return nets.g_loss(kind, fake_out), fake_out.detach()


# ----- Gradient penalties (eager: they differentiate through a backward pass) -----

def input_gradient(D, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, y): y = D(x) (B, 1) and g (B, data_size), row n = dD(x_n)/dx_n, with the graph kept (create_graph)
    so that a loss on g can be differentiated with respect to D's parameters. x is taken as a constant."""
    x = x.detach().requires_grad_(True)
    y = D(x)  # (B, 1)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)  # one output: d sum_n y_n / dx_n = dy_n / dx_n
    return g, y


def gradient_penalty(D, kind: str, real: torch.Tensor, fake: torch.Tensor, mix: torch.Tensor | None) -> torch.Tensor:
    """The unweighted penalty of reference/penalty.py (a 0-d tensor with a graph back to D's parameters):

        r1       (1/2) mean_real ||g||^2
        roth     (1/2) (mean_real (1 - p)^2 ||g||^2 + mean_fake p^2 ||g||^2),  p = sigmoid(logit)
        wgan-gp  mean (||g|| - 1)^2  at  mix * real + (1 - mix) * fake

    1 - p is computed as sigmoid(-logit) (exact in both tails). ||g|| is torch.linalg.vector_norm, whose
    backward is 0 where ||g|| = 0, as in the reference (sqrt of a sum of squares would give NaN there).
    """
    if kind == "r1":
        g, _ = input_gradient(D, real)
        return 0.5 * (g * g).sum(dim=1).mean()
    if kind == "roth":
        g_real, y_real = input_gradient(D, real)
        g_fake, y_fake = input_gradient(D, fake)
        q_real = torch.sigmoid(-y_real[:, 0])  # 1 - p on the real batch
        p_fake = torch.sigmoid(y_fake[:, 0])
        return 0.5 * ((q_real * q_real * (g_real * g_real).sum(dim=1)).mean()
                      + (p_fake * p_fake * (g_fake * g_fake).sum(dim=1)).mean())
    if kind == "wgan-gp":
        g, _ = input_gradient(D, mix * real + (1.0 - mix) * fake)
        return ((torch.linalg.vector_norm(g, dim=1) - 1.0) ** 2).mean()
    raise ValueError(f"unknown penalty {kind!r}")
