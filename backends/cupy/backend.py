"""The CuPy backend: a second hand-written GAN, written for speed where the reference is written for reading.

CuPy has no autograd, so forward, backward, losses and optimizers are written out again here, on CuPy
arrays on an NVIDIA GPU, or on NumPy arrays on the CPU through the very same code (`xp` is the array
module, chosen once by the device). Nothing here calls the reference's math; the reference is only
used for specs, initial parameters and validation, and the tests hold this implementation to it.

How it is laid out for speed:

- Each network's parameters live in ONE flat buffer; every weight and bias is a view into it, and so are
  the gradients and each optimizer buffer. An optimizer update is then a single fused kernel over the
  whole network, the gradient norm one dot product, and WGAN clipping one clip.
- A dense layer is one GEMM (`xp.matmul(x, W, out=...)`, cuBLAS on the GPU) and one fused kernel for
  bias + activation in place. Backward is one fused kernel for g * f'(h) (from the stored activation
  output), two GEMMs and a column sum, all into preallocated buffers.
- The D step runs D once on the real and fake batches stacked (one GEMM per layer instead of two), and
  G writes its samples straight into the fake half of D's input buffer.
- The G step backpropagates through D to its input only; D's parameter gradients are never computed.
- Instance noise is added in place to the halves of D's input (one fused kernel each). A gradient penalty's
  samples are rows of the same stacked batch (R1: the real rows, Roth: real and fake, WGAN-GP: a third block
  of interpolated rows with loss weight 0), so D's forward pass and its one backward sweep serve the loss and
  the penalty together; the double backpropagation in between is _Penalty.
- Activation, gradient and loss buffers are allocated once per batch size (a workspace) and reused by
  every later step; `train_rounds` uploads a chunk's indices and noise once and keeps the metrics on the
  device until the chunk ends, so the hot loop makes no host/device copies and no synchronisation.

Parameters, optimizer state and every array handed out follow the interchange format (backends/interface.py).
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict

import numpy as np

from backends.interface import ALL_FEATURES, CONDITIONAL, Backend
from reference import optim
from reference.mlp import MLPSpec, check_input
from reference.train import StepInputs, StepMetrics, TrainConfig

from .kernels import cupy, kernels_for

_MAX_WORKSPACES = 16  # batch-size workspaces kept; more distinct batch sizes than this evict the oldest
_METRIC_FIELDS = ("d_loss", "g_loss", "d_acc_real", "d_acc_fake", "critic_gap", "d_grad_norm", "g_grad_norm",
                  "d_penalty")
_EXTRAS = ("noise_real", "noise_fake", "noise_g", "mix")


# ----- device selection -----

def cuda_status() -> tuple[bool, str]:
    """(True, description) when CuPy can use a CUDA device, else (False, why not)."""
    if cupy is None:
        return False, "cupy is not installed (pip install cupy-cuda12x)"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError, missing driver or library: all mean "no usable GPU"
        return False, f"CUDA is not usable: {type(error).__name__}: {error}"
    if count < 1:
        return False, "CUDA reports no device"
    return True, f"{count} CUDA device(s)"


def resolve_device(device: str | None):
    """(array module, cupy.cuda.Device or None, canonical name) for "cpu", "cuda", "cuda:N" or None (auto)."""
    if device is not None and not isinstance(device, str):
        raise TypeError(f"device must be a string or None, got {type(device).__name__}")
    if device == "cpu":
        return np, None, "cpu"
    if device is None:
        usable, _ = cuda_status()
        if not usable:
            return np, None, "cpu"
        device = "cuda"
    if device == "cuda" or device.startswith("cuda:"):
        index_text = device.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise ValueError(f"bad device {device!r}: expected cuda or cuda:N with N a device number")
        usable, why = cuda_status()
        if not usable:
            raise ValueError(f"device {device!r} was asked for but {why}; use device='cpu' or None")
        index = int(index_text)
        count = cupy.cuda.runtime.getDeviceCount()
        if index >= count:
            raise ValueError(f"bad device {device!r}: only {count} CUDA device(s) present")
        return cupy, cupy.cuda.Device(index), f"cuda:{index}"
    raise ValueError(f"unknown device {device!r}; choose cpu, cuda, cuda:N, or None for automatic")


def _on_device(method):
    """Run a public method with the backend's CUDA device current (no-op on the CPU)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._device_context():
            return method(self, *args, **kwargs)
    return wrapper


# ----- one network's parameters, gradients and forward/backward passes -----

class _Network:
    """An MLP whose parameters and gradients are views into two flat buffers."""

    def __init__(self, spec: MLPSpec, prefix: str, xp, dtype):
        self.spec, self.prefix, self.xp = spec, prefix, xp
        sizes = spec.sizes
        self.names, self.shapes, offsets = [], [], [0]
        for i in range(spec.num_layers):
            for name, shape in [(f"{prefix}.{i}.weight", (sizes[i], sizes[i + 1])),
                                (f"{prefix}.{i}.bias", (sizes[i + 1],))]:
                self.names.append(name)
                self.shapes.append(shape)
                offsets.append(offsets[-1] + int(np.prod(shape)))
        self.offsets, self.size = offsets, offsets[-1]
        self.params = xp.zeros(self.size, dtype=dtype)
        self.grads = xp.zeros(self.size, dtype=dtype)
        self.W, self.b = self._layer_views(self.params)
        self.dW, self.db = self._layer_views(self.grads)
        last = spec.num_layers - 1
        self.activations = [spec.output_activation if i == last else spec.hidden_activation
                            for i in range(spec.num_layers)]
        self.slope = float(spec.leaky_slope)

    def views(self, flat) -> list:
        """Per-parameter views (interchange order and shapes) into a flat buffer of this network's size."""
        return [flat[a:z].reshape(shape) for a, z, shape in zip(self.offsets[:-1], self.offsets[1:], self.shapes,
                                                                 strict=True)]

    def _layer_views(self, flat):
        views = self.views(flat)
        return views[0::2], views[1::2]

    def to_host(self, flat) -> dict[str, np.ndarray]:
        host = _to_host(flat).astype(np.float64)
        return {name: view.copy() for name, view in zip(self.names, self.views(host), strict=True)}

    def from_host(self, values: dict) -> np.ndarray:
        """The flat host vector of `values` (a name -> array dict for this network), in interchange order."""
        return np.concatenate([np.asarray(values[name], dtype=np.float64).reshape(-1) for name in self.names])


class _Pass:
    """The buffers one MLP needs on one batch size: every layer's output and the gradient with respect to it."""

    def __init__(self, net: _Network, batch: int, dtype, out=None, split: int | None = None):
        xp = net.xp
        sizes = net.spec.sizes[1:]
        self.acts = [xp.empty((batch, n), dtype=dtype) for n in sizes[:-1]]
        self.acts.append(xp.empty((batch, sizes[-1]), dtype=dtype) if out is None else out)
        self.grads = [xp.empty((batch, n), dtype=dtype) for n in sizes]
        self.input = None
        # Stacked [real; fake] batches: bias gradients are summed per half, then added, as the loss is a sum
        # of a real and a fake mean. This keeps structural zeros exact (WGAN's critic output bias has gradient
        # 0 = -1 + 1, which Adam or RMSprop would otherwise blow up from rounding noise into a full step).
        self.split = split
        self.bias_scratch = [xp.empty(n, dtype=dtype) for n in sizes] if split is not None else None

    def forward(self, net: _Network, kernels, x):
        """y = MLP(x); every layer's output stays in self.acts for backward."""
        xp = net.xp
        self.input = x
        for i, name in enumerate(net.activations):
            xp.matmul(x, net.W[i], out=self.acts[i])  # (B, n_in) @ (n_in, n_out)
            kernels.bias_act[name](self.acts[i], net.b[i], net.slope)  # h <- f(h + b), in place
            x = self.acts[i]
        return x

    def backward(self, net: _Network, kernels, param_grads: bool, grad_input=None, inject=None):
        """Backpropagate dL/dy, which the caller has put in self.grads[-1].

        param_grads: write dL/dW, dL/db into net.dW, net.db. grad_input: a buffer for dL/dx, or None.
        inject: (lo, [dP/dh_i or None per layer]) adds a penalty's dP/dh_i to dL/dh_i on rows lo:lo+len.
        self.grads is overwritten (each holds dL/dh of its layer afterwards).
        """
        xp = net.xp
        for i in reversed(range(len(net.activations))):
            g = self.grads[i]
            act_grad = kernels.act_grad[net.activations[i]]
            if act_grad is not None:
                act_grad(g, self.acts[i], net.slope)  # dL/dh = dL/dy * f'(h), in place
            if inject is not None and inject[1][i] is not None:
                lo, extra = inject[0], inject[1][i]
                g[lo:lo + extra.shape[0]] += extra
            if param_grads:
                x_i = self.acts[i - 1] if i > 0 else self.input
                xp.matmul(x_i.T, g, out=net.dW[i])  # (n_in, B) @ (B, n_out)
                if self.split is None:
                    g.sum(axis=0, out=net.db[i])
                else:
                    g[:self.split].sum(axis=0, out=net.db[i])
                    g[self.split:].sum(axis=0, out=self.bias_scratch[i])
                    net.db[i] += self.bias_scratch[i]
            target = self.grads[i - 1] if i > 0 else grad_input
            if target is not None:  # (B, n_out) @ (n_out, n_in); into a narrower grad_input: its first columns only
                w = net.W[i] if i > 0 else net.W[0][:target.shape[1]]  # (a conditional D's label rows are left out)
                xp.matmul(g, w.T, out=target)


class _Optimizer:
    """One network's optimizer: flat state buffers, a host-side step count, one fused update."""

    def __init__(self, spec: optim.OptimizerSpec, net: _Network, kernels, dtype):
        self.spec, self.net, self.kernels = spec, net, kernels
        self.t = 0
        self.buffers = {suffix: net.xp.zeros(net.size, dtype=dtype) for suffix in optim.buffer_names(spec)}

    def update(self):
        """Apply one update to the network's parameters from the network's gradient buffer."""
        s, k, p, g, buf = self.spec, self.kernels, self.net.params, self.net.grads, self.buffers
        self.t += 1
        if s.name == "sgd":
            if s.momentum > 0:
                k.sgd_momentum(p, g, buf["momentum_buffer"], s.lr, s.momentum)
            else:
                k.sgd(p, g, s.lr)
        elif s.name == "adam":
            t = float(self.t)
            step_size = s.lr / (1.0 - s.beta1**t)
            bias2_sqrt = float(np.sqrt(1.0 - s.beta2**t))
            k.adam(p, g, buf["exp_avg"], buf["exp_avg_sq"], s.beta1, 1.0 - s.beta1, s.beta2, 1.0 - s.beta2,
                   step_size, bias2_sqrt, s.eps)
        elif s.momentum > 0:
            k.rmsprop_momentum(p, g, buf["square_avg"], buf["momentum_buffer"], s.lr, s.alpha, 1.0 - s.alpha,
                               s.eps, s.momentum)
        else:
            k.rmsprop(p, g, buf["square_avg"], s.lr, s.alpha, 1.0 - s.alpha, s.eps)

    def export(self) -> dict[str, np.ndarray]:
        state = {"step": np.asarray(float(self.t), dtype=np.float64)}
        host = {suffix: self.net.to_host(flat) for suffix, flat in self.buffers.items()}
        for name in self.net.names:
            for suffix in self.buffers:
                state[f"{name}.{suffix}"] = host[suffix][name]
        return state

    def load(self, state: dict):
        """Take an interchange state already validated by Backend.check_state."""
        for suffix, buffer in self.buffers.items():
            flat = self.net.from_host({name: state[f"{name}.{suffix}"] for name in self.net.names})
            buffer[...] = self.net.xp.asarray(flat, dtype=buffer.dtype)
        self.t = int(state["step"])


# ----- gradient penalties: double backpropagation on rows of the D step's batch -----

class _Penalty:
    """A gradient penalty on rows lo:hi of the D step's stacked batch, by hand-written double backpropagation.

    g_n = dD(x_n)/dx_n for those rows is one backward pass with dL/dy = 1 (D has one output), kept as a chain:

        u_L = 1,   a_i = u_{i+1} * f'(h_i),   u_i = a_i @ W_i^T   (i = L-1 ... 0; u_0 = g)

    The penalty is P = sum over the rows of term_n (its weight and batch means folded into `coef`); a weight
    kernel gives term_n, k_n with dP/dg_n = k_n g_n, and for Roth dP/dy_n. Then the chain's reverse, i = 0 ... L-1:

        dP/dW_i += dP/du_i^T @ a_i        dP/da_i = dP/du_i @ W_i
        dP/du_{i+1} = dP/da_i * f'(h_i)   dP/dh_i = dP/da_i * u_{i+1} * f''(h_i)   (nonzero for tanh, sigmoid)

    The dP/dh_i and dP/dy still have to be carried through the forward pass. That is an ordinary backward
    sweep, and the D step runs one anyway for its loss, over the same rows: `run` adds dP/dy to dL/dy, and
    `inject` hands the dP/dh_i to _Pass.backward, so the one sweep gives both gradients. The chain's own
    dP/dW_i are kept in `flat` (D's layout; its bias entries stay 0) and added to D's gradient afterwards.
    """

    def __init__(self, backend: CupyBackend, lo: int, hi: int, n_real: int, n_fake: int):
        xp, dt, net, spec = backend.xp, backend.np_dtype, backend.D, backend.config.penalty
        self.kind, self.lo, self.hi = spec.kind, lo, hi
        rows, sizes, last = hi - lo, net.spec.sizes, net.spec.num_layers - 1
        curved = [backend.kernels.second_order[name] is not None for name in net.activations]
        self.u = [xp.empty((rows, n), dtype=dt) for n in sizes]  # u_0 = g ... u_L = 1
        self.u[-1].fill(1.0)
        self.refill_top = curved[last]  # the last layer's second_order kernel writes dP/du_L over u_L
        self.a = [self.u[i + 1] if name == "identity" else xp.empty((rows, sizes[i + 1]), dtype=dt)
                  for i, name in enumerate(net.activations)]  # identity: a_i = u_{i+1}, the same buffer
        # dP/da_i, then dP/dh_i in place (curved) or dP/du_{i+1} in place (piecewise linear). The last layer
        # needs none unless it is curved: dP/du_L is not used.
        self.ga = [xp.empty((rows, sizes[i + 1]), dtype=dt) if i < last or curved[i] else None
                   for i in range(last + 1)]
        self.inject = (lo, [ga if c else None for ga, c in zip(self.ga, curved, strict=True)])
        self.gg = xp.empty((rows, sizes[0]), dtype=dt)  # g * g, then dP/dg
        self.sq, self.term, self.k = (xp.empty((rows, 1), dtype=dt) for _ in range(3))
        self.flat = xp.zeros(net.size, dtype=dt)
        self.dW = net.views(self.flat)[0::2]
        w = spec.weight
        if self.kind == "r1":  # (w / 2) mean_real ||g||^2
            self.coef = w / (2.0 * n_real)
        elif self.kind == "wgan-gp":  # w mean (||g|| - 1)^2
            self.coef = w / float(rows)
        else:  # (w / 2) (mean_real (1 - p)^2 ||g||^2 + mean_fake p^2 ||g||^2); sign -1 real, +1 fake
            sign, coef = _d_loss_signs(n_real, n_fake)
            self.sign = xp.asarray(sign, dtype=dt)
            self.coef = xp.asarray(0.5 * w * coef, dtype=dt)

    def run(self, net: _Network, kernels, d_pass: _Pass):
        """The penalty (0-d) after D's forward pass over the stacked batch and its loss gradient in d_pass.grads[-1].

        Leaves dP/dy added to d_pass.grads[-1], self.inject's dP/dh_i, and the chain's dP/dW_i in self.flat.
        """
        xp, lo, hi = net.xp, self.lo, self.hi
        ys = [act[lo:hi] for act in d_pass.acts]  # y_i = f(h_i) on the penalty's rows (contiguous views)
        u, a = self.u, self.a
        if self.refill_top:
            u[-1].fill(1.0)
        for i in reversed(range(len(net.activations))):  # g: one backward pass with dL/dy = 1
            times_deriv = kernels.times_deriv[net.activations[i]]
            if times_deriv is not None:
                times_deriv(a[i], u[i + 1], ys[i], net.slope)  # a_i = u_{i+1} * f'(h_i)
            xp.matmul(a[i], net.W[i].T, out=u[i])  # u_i = a_i @ W_i^T, (P, n_out) @ (n_out, n_in)
        g, gg, sq = u[0], self.gg, self.sq
        xp.multiply(g, g, out=gg)
        gg.sum(axis=1, keepdims=True, out=sq)  # ||g_n||^2, (P, 1)
        if self.kind == "r1":
            kernels.r1_weights(sq, self.coef, self.term, self.k)
        elif self.kind == "wgan-gp":
            kernels.wgan_gp_weights(sq, self.coef, self.term, self.k)
        else:
            kernels.roth_weights(ys[-1], self.sign, self.coef, sq, self.term, self.k, d_pass.grads[-1][lo:hi])
        xp.multiply(self.k, g, out=gg)  # dP/du_0 = dP/dg = k g, (P, n_in)
        grad_u = gg
        for i, name in enumerate(net.activations):  # the chain's reverse
            xp.matmul(grad_u.T, a[i], out=self.dW[i])  # dP/dW_i from u_i = a_i @ W_i^T, (n_in, P) @ (P, n_out)
            ga = self.ga[i]
            if ga is None:
                break  # the last layer, piecewise linear: nothing further depends on it
            xp.matmul(grad_u, net.W[i], out=ga)  # dP/da_i, (P, n_in) @ (n_in, n_out)
            second_order = kernels.second_order[name]
            if second_order is not None:
                second_order(ga, u[i + 1], ys[i], net.slope)  # u_{i+1} <- dP/du_{i+1}, ga <- dP/dh_i
                grad_u = u[i + 1]
            else:
                act_grad = kernels.act_grad[name]
                if act_grad is not None:
                    act_grad(ga, ys[i], net.slope)  # ga <- dP/du_{i+1}; f'' = 0, no dP/dh_i
                grad_u = ga
        return self.term.sum()


# ----- workspaces: the buffers of one D step or one G step at one batch size -----

def _d_loss_signs(n_real: int, n_fake: int, n_extra: int = 0):
    """(sign, coef) per row of the stacked [real; fake; extra] logits for D's loss (see kernels.py).

    Extra rows (WGAN-GP's interpolated samples) only serve the penalty: their loss coefficient is 0."""
    sign = np.concatenate([np.full(n_real, -1.0), np.full(n_fake + n_extra, 1.0)])[:, None]
    coef = np.concatenate([np.full(n_real, 1.0 / n_real), np.full(n_fake, 1.0 / n_fake), np.zeros(n_extra)])[:, None]
    return sign, coef


def _g_loss_signs(kind: str, n: int):
    """(sign, coef) per row for G's loss: minimax -softplus(l)/n, non-saturating softplus(-l)/n, WGAN -l/n."""
    sign, coef = {"minimax": (1.0, -1.0 / n), "nonsaturating": (-1.0, 1.0 / n), "wasserstein": (-1.0, 1.0 / n)}[kind]
    return np.full((n, 1), sign), np.full((n, 1), coef)


class _DWork:
    """D step on n_real real rows and n_fake fake rows, stacked as one batch [real; G(z)] (+ noise).

    With WGAN-GP a third block of n_real rows holds the interpolated samples t real + (1 - t) fake; they go
    through D with the other two, with loss coefficient 0, and only the penalty reads them.

    A conditional D's input has num_classes more columns, the one-hot labels: `real_rows` (data and labels) is
    filled whole by a gather from the labelled data set; `fake_labels` is copied from G's input's label columns.
    G then has its own (contiguous) output buffer, copied into the fake rows' data columns."""

    def __init__(self, backend: CupyBackend, n_real: int, n_fake: int):
        xp, dt, spec, penalty = backend.xp, backend.np_dtype, backend.config.spec, backend.config.penalty
        self.n_real, self.n_fake = n_real, n_fake
        n_hat = n_real if penalty is not None and penalty.kind == "wgan-gp" else 0
        rows, size = n_real + n_fake + n_hat, spec.data_size
        self.d_in = xp.empty((rows, size + spec.num_classes), dtype=dt)
        self.real_rows = self.d_in[:n_real]  # what fill_real writes: data (and labels)
        self.real, self.fake = self.d_in[:n_real, :size], self.d_in[n_real:n_real + n_fake, :size]
        self.fake_labels = self.d_in[n_real:n_real + n_fake, size:] if spec.num_classes else None
        self.hat = self.d_in[n_real + n_fake:, :size] if n_hat else None
        # G writes the fake rows directly; conditional: into its own buffer, then one copy (the rows are strided)
        self.g_pass = _Pass(backend.G, n_fake, dt, out=None if spec.num_classes else self.fake)
        self.d_pass = _Pass(backend.D, rows, dt, split=n_real)
        self.term = xp.empty((rows, 1), dtype=dt)
        self.consts = backend.loss_constants(*_d_loss_signs(n_real, n_fake, n_hat))
        self.penalty = None
        if penalty is not None:
            lo, hi = {"r1": (0, n_real), "roth": (0, n_real + n_fake), "wgan-gp": (n_real + n_fake, rows)}[penalty.kind]
            self.penalty = _Penalty(backend, lo, hi, n_real, n_fake)


class _GWork:
    """G step on a batch of n noise vectors: G, then D on G's samples, backward through D into G."""

    def __init__(self, backend: CupyBackend, n: int):
        xp, dt = backend.xp, backend.np_dtype
        self.g_pass = _Pass(backend.G, n, dt)
        self.d_pass = _Pass(backend.D, n, dt)
        self.term = xp.empty((n, 1), dtype=dt)
        spec = backend.config.spec
        self.consts = backend.loss_constants(*_g_loss_signs(spec.loss, n))
        self.d_in, self._shape, self._xp, self._dtype = None, (n, spec.data_size + spec.num_classes), xp, dt
        self.size = spec.data_size
        if spec.num_classes:  # D reads [G(z) (+ noise), onehot]: always a buffer of its own
            self.noisy_input()

    def noisy_input(self):
        """D's input G(z) + noise (allocated on first use: G's own output must stay G(z) for its backward).
        Conditional: its first data_size columns; the label columns follow."""
        if self.d_in is None:
            self.d_in = self._xp.empty(self._shape, dtype=self._dtype)
        return self.d_in[:, :self.size]


def _to_host(a) -> np.ndarray:
    return a.get() if cupy is not None and isinstance(a, cupy.ndarray) else np.asarray(a)


class CupyBackend(Backend):
    """The GAN on CuPy arrays (GPU), or on NumPy arrays through the same code (CPU). float32 by default."""

    name = "cupy"
    features = ALL_FEATURES | {CONDITIONAL}

    def __init__(self, config: TrainConfig, *, dtype: str = "float32", device: str | None = None):
        super().__init__(config, dtype=dtype, device=device)
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a reference.train.TrainConfig, got {type(config).__name__}")
        self.xp, self._cuda_device, self.device = resolve_device(device)
        self.np_dtype = np.dtype(dtype)
        self.kernels = kernels_for(self.xp)
        self._logistic = config.spec.loss != "wasserstein"
        with self._device_context():
            self.G = _Network(config.spec.generator, "G", self.xp, self.np_dtype)
            self.D = _Network(config.spec.discriminator, "D", self.xp, self.np_dtype)
            self.d_opt = _Optimizer(config.d_optimizer, self.D, self.kernels, self.np_dtype)
            self.g_opt = _Optimizer(config.g_optimizer, self.G, self.kernels, self.np_dtype)
        self._step = None  # None until init/load_state
        self._workspaces: OrderedDict = OrderedDict()
        self._data = None

    def _device_context(self):
        return self._cuda_device if self._cuda_device is not None else contextlib.nullcontext()

    def _require_state(self):
        if self._step is None:
            raise RuntimeError("the backend has no state yet: call init(seed) or load_state(...) first")

    def loss_constants(self, sign: np.ndarray, coef: np.ndarray) -> tuple:
        """Device arrays of the per-row loss constants: (sign, coef) for logit losses, (sign * coef,) for WGAN."""
        asarray = functools.partial(self.xp.asarray, dtype=self.np_dtype)
        return (asarray(sign), asarray(coef)) if self._logistic else (asarray(sign * coef),)

    def _loss(self, logits, consts, term, grad):
        """Per-row terms into `term`, dL/dlogits into `grad`; returns the loss as a 0-d device array."""
        if self._logistic:
            self.kernels.logistic_loss(logits, consts[0], consts[1], term, grad)
        else:
            self.kernels.linear_loss(logits, consts[0], term, grad)
        return term.sum()

    def _workspace(self, key, build):
        work = self._workspaces.get(key)
        if work is None:
            work = self._workspaces[key] = build()
            if len(self._workspaces) > _MAX_WORKSPACES:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(key)
        return work

    def _d_work(self, n_real: int, n_fake: int) -> _DWork:
        return self._workspace(("d", n_real, n_fake), lambda: _DWork(self, n_real, n_fake))

    def _g_work(self, n: int) -> _GWork:
        return self._workspace(("g", n), lambda: _GWork(self, n))

    # ----- the D step and the G step on device arrays (the caller has filled work.real for D) -----

    def _d_pass(self, work: _DWork, z, sigma=1.0, noise_real=None, noise_fake=None, mix=None):
        """D's loss (0-d, penalty included), the penalty (0-d, or None) and the gradient in self.D.grads.

        G's parameters are only read. sigma * noise_real / noise_fake are added to what D sees; mix: WGAN-GP's t.
        z is G's whole input: conditional, [z, onehot(fake labels)], whose label columns D's fake rows get too."""
        k = self.kernels
        x_fake = work.g_pass.forward(self.G, k, z)  # fills work.fake (unconditional)
        if work.fake_labels is not None:
            work.fake[...] = x_fake
            work.fake_labels[...] = z[:, self.config.spec.z_size:]
        if noise_real is not None:
            k.add_noise(work.real, noise_real, sigma)
        if noise_fake is not None:
            k.add_noise(work.fake, noise_fake, sigma)
        if work.hat is not None:
            k.interpolate(work.hat, work.real, work.fake, mix)
        logits = work.d_pass.forward(self.D, k, work.d_in)
        loss = self._loss(logits, work.consts, work.term, work.d_pass.grads[-1])
        if work.penalty is None:
            work.d_pass.backward(self.D, k, param_grads=True)
            return loss, None
        penalty = work.penalty.run(self.D, k, work.d_pass)  # adds dP/dy to d_pass.grads[-1]
        work.d_pass.backward(self.D, k, param_grads=True, inject=work.penalty.inject)
        self.D.grads += work.penalty.flat  # the chain's own dP/dW
        return loss + penalty, penalty

    def _g_pass(self, work: _GWork, z, sigma=1.0, noise=None):
        """G's loss (0-d) and its gradient in self.G.grads; D's parameter gradients are not computed.

        z is G's whole input (conditional: [z, onehot(labels)]); D reads [G(z) (+ noise), the same onehot], and only
        the data columns of D's input gradient go back into G (the label columns are constants)."""
        x_fake = work.g_pass.forward(self.G, self.kernels, z)
        if noise is not None:  # D sees G(z) + sigma noise; dL/d(G(z) + noise) = dL/dG(z)
            self.kernels.noisy(work.noisy_input(), x_fake, noise, sigma)
            x_fake = work.d_in
        elif self.config.spec.num_classes:
            work.noisy_input()[...] = x_fake
            x_fake = work.d_in
        if self.config.spec.num_classes:
            work.d_in[:, work.size:] = z[:, self.config.spec.z_size:]
        logits = work.d_pass.forward(self.D, self.kernels, x_fake)
        loss = self._loss(logits, work.consts, work.term, work.d_pass.grads[-1])
        work.d_pass.backward(self.D, self.kernels, param_grads=False, grad_input=work.g_pass.grads[-1])
        work.g_pass.backward(self.G, self.kernels, param_grads=True)
        return loss

    def _d_update(self, work: _DWork, z, *options):
        loss, penalty = self._d_pass(work, z, *options)
        self.d_opt.update()
        if self.config.clip_value is not None:
            c = self.config.clip_value
            self.xp.clip(self.D.params, -c, c, out=self.D.params)  # every critic weight and bias
        return loss, penalty

    def _g_update(self, work: _GWork, z, *options):
        loss = self._g_pass(work, z, *options)
        self.g_opt.update()
        return loss

    def _rounds(self, n: int, n_real: int, fill_real, z_d, z_g, extras: dict) -> list[StepMetrics]:
        """n rounds; fill_real(r, i, out) writes round r's i-th real batch (conditional: with its one-hot labels).
        z_d, z_g: G's inputs (conditional: [z, onehot(labels_fake / labels_g)]). Metrics stay on the device.

        extras: the device arrays of _EXTRAS the config uses, each with a leading round axis; instance noise
        is N(0, 1) there and scaled here by sigma = config.noise_scale(completed rounds), a host number."""
        xp, cfg = self.xp, self.config
        noise_real, noise_fake, noise_g, mix = (extras.get(name) for name in _EXTRAS)
        pick = lambda a, r, i: None if a is None else a[r, i]  # noqa: E731
        metrics = xp.full((n, len(_METRIC_FIELDS)), np.nan, dtype=np.float64)
        for r in range(n):
            sigma = cfg.noise_scale(self._step)
            for i in range(cfg.d_steps):
                d_work = self._d_work(n_real, z_d.shape[2])
                fill_real(r, i, d_work.real_rows)
                d_loss, d_penalty = self._d_update(d_work, z_d[r, i], sigma, pick(noise_real, r, i),
                                                   pick(noise_fake, r, i), pick(mix, r, i))
            logits = d_work.d_pass.acts[-1]
            real_out, fake_out = logits[:n_real], logits[n_real:n_real + d_work.n_fake]
            metrics[r, 0] = d_loss
            metrics[r, 7] = 0.0 if d_penalty is None else d_penalty
            if self._logistic:
                metrics[r, 2] = (real_out > 0).mean()
                metrics[r, 3] = (fake_out < 0).mean()
            else:
                metrics[r, 4] = real_out.mean() - fake_out.mean()
            metrics[r, 5] = xp.sqrt(xp.dot(self.D.grads, self.D.grads))
            for j in range(cfg.g_steps):
                g_work = self._g_work(z_g.shape[2])
                g_loss = self._g_update(g_work, z_g[r, j], sigma, pick(noise_g, r, j))
            metrics[r, 1] = g_loss
            metrics[r, 6] = xp.sqrt(xp.dot(self.G.grads, self.G.grads))
            self._step += 1
        host = _to_host(metrics)  # the one device -> host copy of the chunk
        first = self._step - n + 1
        return [StepMetrics(step=first + r, **{f: float(v) for f, v in zip(_METRIC_FIELDS, host[r], strict=True)})
                for r in range(n)]

    # ----- state in and out -----

    @_on_device
    def load_state(self, params, d_opt_state, g_opt_state, step):
        self.check_state(params, d_opt_state, g_opt_state, step)
        g_flat, d_flat = self.G.from_host(params), self.D.from_host(params)
        self.d_opt.load(d_opt_state)
        self.g_opt.load(g_opt_state)
        self.G.params[...] = self.xp.asarray(g_flat, dtype=self.np_dtype)
        self.D.params[...] = self.xp.asarray(d_flat, dtype=self.np_dtype)
        self._step = int(step)

    @_on_device
    def export_params(self):
        self._require_state()
        return {**self.G.to_host(self.G.params), **self.D.to_host(self.D.params)}

    @_on_device
    def export_optimizer_state(self):
        self._require_state()
        return self.d_opt.export(), self.g_opt.export()

    @property
    def step(self):
        self._require_state()
        return self._step

    # ----- forward passes and losses -----

    def _upload(self, x):
        return self.xp.asarray(x, dtype=self.np_dtype)

    def _device_labels(self, labels, rows: int, what: str):
        """A conditional GAN's labels (checked by Backend.check_labels) uploaded as int64; None otherwise."""
        labels = self.check_labels(labels, rows, what)
        return None if labels is None else self.xp.asarray(labels, dtype=np.int64)

    def _with_labels(self, x, labels):
        """[x, onehot(labels)] on the device, (..., n) and (...) ints -> (..., n + num_classes); x if labels is None.

        Built once per call (a chunk, a step's inputs): the one-hot columns are a comparison with 0 .. K-1."""
        if labels is None:
            return x
        xp, n = self.xp, x.shape[-1]
        out = xp.empty((*x.shape[:-1], n + self.config.spec.num_classes), dtype=self.np_dtype)
        out[..., :n] = x
        out[..., n:] = labels[..., None] == xp.arange(self.config.spec.num_classes)
        return out

    @_on_device
    def generate(self, z, labels=None):
        self._require_state()
        check_input(z, self.config.spec.z_size, "z")
        g_in = self._with_labels(self._upload(z), self._device_labels(labels, len(z), "generate"))
        return _to_host(_Pass(self.G, len(z), self.np_dtype).forward(self.G, self.kernels, g_in))

    @_on_device
    def discriminate(self, x, labels=None):
        self._require_state()
        check_input(x, self.config.spec.data_size, "x")
        d_in = self._with_labels(self._upload(x), self._device_labels(labels, len(x), "discriminate"))
        return _to_host(_Pass(self.D, len(x), self.np_dtype).forward(self.D, self.kernels, d_in))

    @staticmethod
    def _check_outputs(out, what: str):
        if not isinstance(out, np.ndarray) or not np.issubdtype(out.dtype, np.floating):
            raise TypeError(f"{what} must be a floating-point numpy array")
        if out.ndim != 2 or out.shape[1] != 1 or out.shape[0] == 0:
            raise ValueError(f"{what} must have shape (batch > 0, 1), got {out.shape}")
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{what} contains NaN or Inf")

    @_on_device
    def d_loss(self, real_out, fake_out):
        self._check_outputs(real_out, "real_out")
        self._check_outputs(fake_out, "fake_out")
        n_real, n_fake = len(real_out), len(fake_out)
        logits = self._upload(np.concatenate([real_out, fake_out]))
        term, grad = self.xp.empty_like(logits), self.xp.empty_like(logits)
        loss = self._loss(logits, self.loss_constants(*_d_loss_signs(n_real, n_fake)), term, grad)
        grad = _to_host(grad)
        return float(loss), grad[:n_real], grad[n_real:]

    @_on_device
    def g_loss(self, fake_out):
        self._check_outputs(fake_out, "fake_out")
        logits = self._upload(fake_out)
        term, grad = self.xp.empty_like(logits), self.xp.empty_like(logits)
        consts = self.loss_constants(*_g_loss_signs(self.config.spec.loss, len(fake_out)))
        loss = self._loss(logits, consts, term, grad)
        return float(loss), _to_host(grad)

    # ----- gradients without updating -----

    def _optional(self, x, rows: int, columns: int, what: str):
        """None, or x checked to be a finite (rows, columns) float array and uploaded."""
        if x is None:
            return None
        check_input(x, columns, what)
        if len(x) != rows:
            raise ValueError(f"{what} must have shape ({rows}, {columns}), got {x.shape}")
        return self._upload(x)

    @_on_device
    def d_grads(self, x_real, z, *, real_noise=None, fake_noise=None, mix=None, real_labels=None, fake_labels=None):
        self._require_state()
        size = self.config.spec.data_size
        check_input(x_real, size, "x_real")
        check_input(z, self.config.spec.z_size, "z")
        n_real, n_fake = len(x_real), len(z)
        real_labels = self._device_labels(real_labels, n_real, "real_labels")
        fake_labels = self._device_labels(fake_labels, n_fake, "fake_labels")
        real_noise = self._optional(real_noise, n_real, size, "real_noise")  # already scaled: sigma = 1
        fake_noise = self._optional(fake_noise, n_fake, size, "fake_noise")
        if self.config.needs_mix:
            if mix is None:
                raise ValueError("the wgan-gp penalty needs the interpolation weights `mix` (B, 1)")
            if n_real != n_fake:
                raise ValueError(f"wgan-gp interpolates real and fake samples pairwise: the batches must have the "
                                 f"same size, got {n_real} and {n_fake}")
            mix = self._optional(mix, n_real, 1, "mix")
        else:
            mix = None  # only WGAN-GP reads it
        work = self._d_work(n_real, n_fake)
        work.real_rows[...] = self._with_labels(self._upload(x_real), real_labels)
        g_in = self._with_labels(self._upload(z), fake_labels)
        loss, _ = self._d_pass(work, g_in, 1.0, real_noise, fake_noise, mix)
        return float(loss), self.D.to_host(self.D.grads)

    @_on_device
    def g_grads(self, z, *, fake_noise=None, labels=None):
        self._require_state()
        check_input(z, self.config.spec.z_size, "z")
        noise = self._optional(fake_noise, len(z), self.config.spec.data_size, "fake_noise")
        g_in = self._with_labels(self._upload(z), self._device_labels(labels, len(z), "labels"))
        loss = self._g_pass(self._g_work(len(z)), g_in, 1.0, noise)
        return float(loss), self.G.to_host(self.G.grads)

    # ----- training -----

    @_on_device
    def train_step(self, inputs: StepInputs) -> StepMetrics:
        self._require_state()
        if not isinstance(inputs, StepInputs):
            raise TypeError(f"train_step takes a StepInputs, got {type(inputs).__name__}")
        inputs.check(self.config)
        labels = {name: None if not self.config.needs_labels else self.xp.asarray(getattr(inputs, name), np.int64)
                  for name in ("labels_real", "labels_fake", "labels_g")}
        # (k, B, data_size [+ num_classes]): one transfer per array, the one-hot columns written on the device
        real = self._with_labels(self._upload(inputs.real), labels["labels_real"])
        extras = {name: self._upload(getattr(inputs, name))[None] for name in self._extras_used()}

        def fill_real(r, i, out):
            out[...] = real[i]

        z_d = self._with_labels(self._upload(inputs.z_d), labels["labels_fake"])
        z_g = self._with_labels(self._upload(inputs.z_g), labels["labels_g"])
        return self._rounds(1, real.shape[1], fill_real, z_d[None], z_g[None], extras)[0]

    def _extras_used(self) -> list[str]:
        """The names in _EXTRAS this config reads (StepInputs may carry others; they are ignored)."""
        return [name for name in _EXTRAS if (self.config.needs_mix if name == "mix" else self.config.needs_noise)]

    @_on_device
    def set_data(self, data, labels=None):
        """Put the training set on the device; a conditional GAN's as [data, onehot(labels)] (N, data + classes),
        so that one gather fills a real batch's rows of D's input, labels included."""
        if not isinstance(data, np.ndarray) or not np.issubdtype(data.dtype, np.floating):
            raise TypeError("data must be a floating-point numpy array")
        size = self.config.spec.data_size
        if data.ndim != 2 or data.shape[1] != size or data.shape[0] == 0:
            raise ValueError(f"data must have shape (N > 0, {size}), got {data.shape}")
        if not np.all(np.isfinite(data)):
            raise ValueError("data contains NaN or Inf")
        labels = self.check_data_labels(labels, len(data))
        device_labels = None if labels is None else self.xp.asarray(labels, dtype=np.int64)
        self._data = self._with_labels(self._upload(data), device_labels)
        self._labels = labels

    @_on_device
    def train_rounds(self, index, z_d, z_g, **extras):
        self._require_state()
        if self._data is None:
            raise RuntimeError("call set_data(data) before train_rounds")
        n = self.check_chunk(index, z_d, z_g, len(self._data), **extras)
        if n == 0:
            return []
        xp = self.xp
        index_dev = xp.asarray(index, dtype=np.int64)  # the chunk's draws: one transfer each
        labels = {name: extras.pop(name, None) for name in ("labels_fake", "labels_g")}
        labels = {name: None if v is None else xp.asarray(v, dtype=np.int64) for name, v in labels.items()}
        extras_dev = {name: self._upload(array) for name, array in extras.items()}
        data = self._data  # conditional: with the one-hot labels, so the gather fills them too

        def fill_real(r, i, out):
            xp.take(data, index_dev[r, i], axis=0, out=out)

        z_d = self._with_labels(self._upload(z_d), labels["labels_fake"])  # G's inputs for the whole chunk
        z_g = self._with_labels(self._upload(z_g), labels["labels_g"])
        return self._rounds(n, index.shape[2], fill_real, z_d, z_g, extras_dev)
