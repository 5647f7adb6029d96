"""Generated cases: Hypothesis draws the *shape* of a problem (architecture, loss, optimizer, sizes, seeds,
scales) and the suite draws every array from NumPy generators seeded by the case. The same arrays go to
the float64 reference and to the backend under test, so nothing relies on two frameworks' RNGs agreeing.

Arrays are not drawn element by element by Hypothesis: that would be slow for 128 x 64 batches and would
not shrink usefully. Shrinking works on what matters: depth, widths, batch size, number of steps.

This module also decides which cases are *well-posed* (`conditioning`): a ReLU pre-activation at 0 or an
Adam step on a gradient entry at rounding-noise level has no single correct answer, and such cases are
rejected (Hypothesis `assume`) rather than compared (margins in tolerances.py).
"""

from dataclasses import dataclass, field, replace

import numpy as np
from hypothesis import strategies as st

from reference import gan, losses, mlp, optim, penalty
from reference.gan import GANSpec
from reference.penalty import PenaltySpec
from reference.train import StepInputs, TrainConfig

from .tolerances import ADAPTIVE_MARGIN, KINK_MARGIN, NOISE_MARGIN

HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "identity")
G_OUTPUT_ACTIVATIONS = ("identity", "tanh", "sigmoid")
SPECIAL_LOGITS = (0.0, 1e4, -1e4, 750.0, -750.0, 90.0, -90.0, 35.0, -35.0, 1e-7)


@dataclass(frozen=True)
class Sizes:
    """Upper bounds for one family of checks (multi-step checks use smaller problems)."""

    max_width: int = 64
    max_io: int = 32  # z_size and data_size
    max_batch: int = 128
    max_depth: int = 3
    max_d_steps: int = 5
    max_g_steps: int = 3
    max_rounds: int = 1


BIG = Sizes()
SMALL = Sizes(max_width=24, max_io=12, max_batch=32, max_depth=3, max_d_steps=4, max_g_steps=3, max_rounds=1)
TRAJECTORY = replace(SMALL, max_width=16, max_batch=16, max_d_steps=3, max_g_steps=2, max_rounds=4)


@dataclass(frozen=True)
class Case:
    """One generated problem. All arrays come from `rng(stream)`, seeded by input_seed."""

    config: TrainConfig
    seed: int  # parameters: reference.gan.init_params(spec, seed), then scaled by param_scale
    input_seed: int
    batch: int
    param_scale: float = 1.0
    warm_state: bool = False  # start from a non-zero optimizer state at a random step count
    rounds: int = 1
    data_scale: float = 1.0
    logit_scale: float = 1.0
    special_logits: tuple = ()
    extras: dict = field(default_factory=dict)

    def rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.input_seed, stream])

    # ----- the arrays -----

    def initial_state(self):
        """(params, d_opt_state, g_opt_state, step): every backend is loaded with exactly this."""
        spec = self.config.spec
        params = {k: v * self.param_scale for k, v in gan.init_params(spec, self.seed).items()}
        d_opt = optim.init_state(self.config.d_optimizer, gan.network(params, "D"))
        g_opt = optim.init_state(self.config.g_optimizer, gan.network(params, "G"))
        step = 0
        if self.warm_state:
            rng = self.rng(1)
            step = int(rng.integers(1, 100))
            d_opt = _warm(d_opt, rng, step)
            g_opt = _warm(g_opt, rng, int(rng.integers(1, 100)))
        return params, d_opt, g_opt, step

    def z(self, stream: int = 2) -> np.ndarray:
        return self.rng(stream).standard_normal((self.batch, self.config.spec.z_size))

    def x(self, stream: int = 3) -> np.ndarray:
        rng = self.rng(stream)
        return rng.standard_normal((self.batch, self.config.spec.data_size)) * self.data_scale + rng.normal()

    def step_inputs(self, r: int = 0, *, z_g_stream: int | None = None) -> StepInputs:
        """Round r's inputs (r = 0, 1, ...); z_g_stream draws a different z_g from the same real/z_d."""
        cfg, b = self.config, self.batch
        rng = self.rng(100 + r)
        real = rng.standard_normal((cfg.d_steps, b, cfg.spec.data_size)) * self.data_scale + rng.normal()
        z_d = rng.standard_normal((cfg.d_steps, b, cfg.spec.z_size))
        z_g = rng.standard_normal((cfg.g_steps, b, cfg.spec.z_size))
        extras = {}
        if cfg.needs_noise:  # drawn after the usual arrays: a case without remedies draws what it always did
            d = cfg.spec.data_size
            extras["noise_real"] = rng.standard_normal((cfg.d_steps, b, d))
            extras["noise_fake"] = rng.standard_normal((cfg.d_steps, b, d))
            extras["noise_g"] = rng.standard_normal((cfg.g_steps, b, d))
        if cfg.needs_mix:
            extras["mix"] = rng.uniform(0.0, 1.0, size=(cfg.d_steps, b, 1))
        if cfg.needs_labels:
            k = cfg.spec.num_classes
            extras["labels_real"] = rng.integers(0, k, size=(cfg.d_steps, b))
            extras["labels_fake"] = rng.integers(0, k, size=(cfg.d_steps, b))
            extras["labels_g"] = rng.integers(0, k, size=(cfg.g_steps, b))
        if z_g_stream is not None:
            z_g = self.rng(z_g_stream).standard_normal(z_g.shape)
        return StepInputs(real, z_d, z_g, **extras)

    def logits(self, stream: int) -> np.ndarray:
        """(B, 1) logits of magnitude up to logit_scale (<= 1e4), with special values mixed in."""
        rng = self.rng(stream)
        out = rng.standard_normal((self.batch, 1)) * self.logit_scale
        for i, v in enumerate(self.special_logits):
            if i < self.batch:
                out[rng.integers(0, self.batch), 0] = v
        return out

    def describe(self) -> str:
        c = self.config
        return (f"G {c.spec.generator.sizes} {c.spec.generator.hidden_activation}/{c.spec.generator.output_activation}"
                f", D {c.spec.discriminator.sizes} {c.spec.discriminator.hidden_activation}"
                f" (leaky slope {c.spec.discriminator.leaky_slope:g}), loss {c.spec.loss}, batch {self.batch}, "
                f"D opt {c.d_optimizer}, G opt {c.g_optimizer}, k={c.d_steps}, m={c.g_steps}, "
                f"clip={c.clip_value}, penalty={c.penalty}, instance_noise={c.instance_noise:g} "
                f"(anneal {c.instance_noise_anneal}), seed={self.seed}, input_seed={self.input_seed}, "
                f"param_scale={self.param_scale:g}, warm_state={self.warm_state}, rounds={self.rounds}")


def _warm(state: dict, rng: np.random.Generator, step: int) -> dict:
    """A plausible mid-training optimizer state: moments of gradients of scale ~10^U(-3, 0)."""
    out = {"step": np.asarray(float(step))}
    for name, v in state.items():
        if name == "step":
            continue
        scale = 10.0 ** rng.uniform(-3, 0)
        if name.endswith(("exp_avg_sq", "square_avg")):
            out[name] = (scale * rng.uniform(0.5, 2.0, size=v.shape)) ** 2  # second moments: positive
        else:
            out[name] = scale * rng.standard_normal(v.shape)
    return out


# ----- strategies -----

@st.composite
def mlp_specs(draw, in_size: int, out_size: int, sizes: Sizes, output_activations=("identity",)):
    depth = draw(st.integers(0, sizes.max_depth))
    if draw(st.booleans()):  # equal widths: square hidden layers (a transposed weight still fits there)
        width = draw(st.sampled_from([in_size, draw(st.integers(1, sizes.max_width))]))
        hidden = (width,) * depth
    else:
        hidden = tuple(draw(st.lists(st.integers(1, sizes.max_width), min_size=depth, max_size=depth)))
    return mlp.MLPSpec(in_size, hidden, out_size,
                       hidden_activation=draw(st.sampled_from(HIDDEN_ACTIVATIONS)),
                       output_activation=draw(st.sampled_from(output_activations)),
                       leaky_slope=draw(st.sampled_from([0.2, 0.01, 0.0, 0.5]) | st.floats(0.0, 0.9)))


@st.composite
def gan_specs(draw, sizes: Sizes, loss=None):
    z_size = draw(st.integers(1, sizes.max_io))
    data_size = draw(st.sampled_from([z_size, draw(st.integers(1, sizes.max_io))]))
    generator = draw(mlp_specs(z_size, data_size, sizes, G_OUTPUT_ACTIVATIONS))
    discriminator = draw(mlp_specs(data_size, 1, sizes))
    return gan.GANSpec(generator, discriminator, loss or draw(st.sampled_from(gan_losses())))


def gan_losses():
    from reference.losses import LOSSES
    return LOSSES


def log_uniform(lo: float, hi: float):
    return st.floats(np.log10(lo), np.log10(hi)).map(lambda e: float(10.0 ** e))


@st.composite
def optimizer_specs(draw):
    name = draw(st.sampled_from(optim.OPTIMIZERS))
    momentum = draw(st.just(0.0) | st.floats(0.1, 0.95)) if name != "adam" else 0.0
    # beta1 is 0 or at least 0.01: a beta1 like 1e-38 makes (1 - beta1) round to 1, and then
    # beta1 * m + (1 - beta1) * g (the reference) and torch's m + (1 - beta1) * (g - m) legitimately differ
    # by beta1 * m, an absolute error no tolerance scaled to the result can allow (found by `thorough`).
    beta1 = draw(st.just(0.0) | st.floats(0.01, 0.95))
    return optim.OptimizerSpec(name=name, lr=draw(log_uniform(1e-5, 3e-2)), beta1=beta1,
                               beta2=draw(st.floats(0.9, 0.9999)), alpha=draw(st.floats(0.8, 0.999)),
                               eps=draw(log_uniform(1e-8, 1e-4)), momentum=momentum)


def remedy_options(draw, spec: GANSpec, features: frozenset) -> dict:
    """A gradient penalty and/or instance noise among those `features` allows (at least one of them)."""
    kinds = [k for k in penalty.PENALTIES if f"penalty:{k}" in features
             and not (k == "roth" and spec.loss == "wasserstein")]
    options = {}
    noise = "instance_noise" in features and (not kinds or draw(st.booleans()))
    if kinds and (not noise or draw(st.booleans())):
        options["penalty"] = PenaltySpec(draw(st.sampled_from(kinds)), draw(log_uniform(1e-2, 10.0)))
    if noise:
        options["instance_noise"] = draw(log_uniform(1e-3, 1.0))
        options["instance_noise_anneal"] = draw(st.just(0) | st.integers(1, 200))  # warm states start at 1-100
    return options


def conditional_spec(draw, spec: GANSpec) -> GANSpec:
    """spec with 2-6 classes: both networks read that many more inputs (the one-hot label)."""
    k = draw(st.integers(2, 6))
    widen = lambda net: replace(net, in_size=net.in_size + k)  # noqa: E731
    return replace(spec, generator=widen(spec.generator), discriminator=widen(spec.discriminator), num_classes=k)


@st.composite
def cases(draw, sizes: Sizes = BIG, *, loss=None, clip: str = "maybe", logits: bool = False, warm: bool = True,
          remedies: frozenset | None = None, conditional: bool = False):
    """A Case. clip: "never" | "maybe" | "always" (then c is small enough that clipping bites).
    remedies: the optional features (Backend.features) to draw a penalty and/or instance noise from.
    conditional: a conditional GAN (with instance noise when `remedies` allows it; never a penalty)."""
    spec = draw(gan_specs(sizes, loss))
    if conditional:
        spec = conditional_spec(draw, spec)
        remedies = frozenset(remedies or ()) & {"instance_noise"} if draw(st.booleans()) else frozenset()
    seed = draw(st.integers(0, 2**32 - 1))
    param_scale = draw(st.just(1.0) | st.floats(0.3, 3.0))
    clip_value = None
    if clip == "always":
        init = gan.network(gan.init_params(spec, seed), "D")
        largest = max(float(np.max(np.abs(v))) for v in init.values()) * param_scale
        clip_value = largest * draw(st.floats(0.2, 0.9))
    elif clip == "maybe" and draw(st.booleans()):
        clip_value = draw(log_uniform(1e-3, 1.0))
    config = TrainConfig(spec, d_optimizer=draw(optimizer_specs()), g_optimizer=draw(optimizer_specs()),
                         batch_size=draw(st.integers(1, sizes.max_batch)),
                         d_steps=draw(st.integers(1, sizes.max_d_steps)),
                         g_steps=draw(st.integers(1, sizes.max_g_steps)), clip_value=clip_value,
                         **(remedy_options(draw, spec, remedies) if remedies else {}))
    return Case(config, seed, draw(st.integers(0, 2**32 - 1)), config.batch_size, param_scale=param_scale,
                warm_state=warm and draw(st.booleans()), rounds=draw(st.integers(min(2, sizes.max_rounds),
                                                                                  sizes.max_rounds)),
                data_scale=draw(log_uniform(0.1, 10.0)),
                logit_scale=draw(log_uniform(1e-2, 1e4)) if logits else 1.0,
                special_logits=tuple(draw(st.lists(st.sampled_from(SPECIAL_LOGITS), max_size=4))) if logits else ())


# ----- conditioning: is the case well-posed at this dtype? -----

def _kinked(spec: mlp.MLPSpec, i: int) -> bool:
    act = spec.output_activation if i == spec.num_layers - 1 else spec.hidden_activation
    return act in ("relu", "leaky_relu")


def kink_margin(spec: mlp.MLPSpec, params: dict, prefix: str, x: np.ndarray, *, logit: bool = False) -> float:
    """min over ReLU-type pre-activations of |h| / (|x| @ |W| + |b|): how far from a kink, relative to the
    rounding scale of h. With logit=True the output (whose sign an accuracy reports) counts as a kink too."""
    worst = np.inf
    for i in range(spec.num_layers):
        W, b = params[f"{prefix}.{i}.weight"], params[f"{prefix}.{i}.bias"]
        h = x @ W + b
        if _kinked(spec, i) or (logit and i == spec.num_layers - 1):
            bound = np.abs(x) @ np.abs(W) + np.abs(b) + 1e-300
            worst = min(worst, float(np.min(np.abs(h) / bound)))
        x = spec.activation(i).forward(h)
    return worst


def _denominator(opt: optim.OptimizerSpec, state: dict, name: str, g: np.ndarray) -> np.ndarray:
    """What the next Adam/RMSprop update divides gradient entry g by: sqrt(v_hat) + eps."""
    t = float(state["step"]) + 1.0
    if opt.name == "adam":
        v = opt.beta2 * state[f"{name}.exp_avg_sq"] + (1 - opt.beta2) * g * g
        return np.sqrt(v) / np.sqrt(1 - opt.beta2**t) + opt.eps
    return np.sqrt(opt.alpha * state[f"{name}.square_avg"] + (1 - opt.alpha) * g * g) + opt.eps


def adaptive_margin(opt: optim.OptimizerSpec, state: dict, grads: dict) -> float:
    """min over nonzero gradient entries of (sqrt(v_hat) + eps) / max|g| for Adam/RMSprop; inf for SGD."""
    if opt.name == "sgd":
        return np.inf
    worst = np.inf
    for name, g in grads.items():
        gmax = float(np.max(np.abs(g)))
        nz = g != 0
        if gmax > 0.0 and nz.any():
            worst = min(worst, float(np.min(_denominator(opt, state, name, g)[nz])) / gmax)
    return worst


def gradient_bounds(spec: GANSpec, params: dict, step: str, z: np.ndarray, x_real: np.ndarray | None = None, *,
                    real_noise=None, fake_noise=None, penalty_spec=None, mix=None, real_labels=None,
                    fake_labels=None, labels=None) -> dict:
    """The rounding scale of every parameter gradient entry of a D step (step="d") or a G step ("g").

    A gradient entry is a sum of products; its rounding error is proportional to the sum of the |terms|,
    not to the entry itself. This runs the same backward pass on |W|, |x| and |dL/dlogit| (every activation
    derivative is >= 0): each entry becomes the sum of the magnitudes of the terms that make it up. An entry
    that is 0 with a nonzero bound is a cancellation (a linear critic's bias under the Wasserstein loss gets
    +c/B from each real sample and -c/B from each fake one): float arithmetic leaves ~eps * bound there.
    An entry whose bound is 0 (a dead ReLU unit) is exactly 0 in any precision.
    With instance noise the batches are those D sees. A gradient penalty's share is added as |its gradient|:
    an estimate (its own terms' magnitudes are not tracked), enough to keep its entries from counting as
    structural zeros."""
    abs_params = {k: np.abs(v) for k, v in params.items()}

    def abs_backward(net_spec, prefix, cache, grad_out):
        abs_cache = [(np.abs(x), h) for x, h in cache]
        return mlp.backward(net_spec, abs_params, prefix, abs_cache, np.abs(grad_out))

    fake_labels = labels if step == "g" else fake_labels  # the classes G generates for
    x_fake, g_cache = mlp.forward(spec.generator, params, "G", gan.with_labels(spec, z, fake_labels, "z"))
    x_fake = _seen(x_fake, fake_noise)
    fake_out, fake_cache = mlp.forward(spec.discriminator, params, "D", gan.with_labels(spec, x_fake, fake_labels, "x"))
    if step == "d":
        x_real = _seen(x_real, real_noise)
        real_out, real_cache = mlp.forward(spec.discriminator, params, "D",
                                           gan.with_labels(spec, x_real, real_labels, "x"))
        _, grad_real_out, grad_fake_out = losses.d_loss(spec.loss, real_out, fake_out)
        _, from_real = abs_backward(spec.discriminator, "D", real_cache, grad_real_out)
        _, from_fake = abs_backward(spec.discriminator, "D", fake_cache, grad_fake_out)
        bounds = {k: from_real[k] + from_fake[k] for k in from_real}
        if penalty_spec is not None:
            _, pen = penalty.penalty_and_grads(spec, penalty_spec, params, x_real, x_fake, mix)
            bounds = {k: bounds[k] + np.abs(pen[k]) for k in bounds}
        return bounds
    _, grad_fake_out = losses.g_loss(spec.loss, fake_out)
    grad_x_fake, _ = abs_backward(spec.discriminator, "D", fake_cache, grad_fake_out)
    return abs_backward(spec.generator, "G", g_cache, grad_x_fake[:, :spec.data_size])[1]


def noise_margin(opt: optim.OptimizerSpec, state: dict, grads: dict, bounds: dict) -> float:
    """min over gradient entries with a nonzero rounding scale of (sqrt(v_hat) + eps) / bound; inf for SGD.
    The rounding noise of an entry is ~eps_dtype * bound, and an adaptive update multiplies it by
    1 / (sqrt(v_hat) + eps): where v_hat is ~0 (an entry that is always 0 in exact arithmetic), that is
    1 / eps."""
    if opt.name == "sgd":
        return np.inf
    worst = np.inf
    for name, g in grads.items():
        b = bounds[name]
        live = b > 0
        if live.any():
            worst = min(worst, float(np.min(_denominator(opt, state, name, g)[live] / b[live])))
    return worst


def _update_ok(dtype: str, opt, state, grads, spec: GANSpec, params, step: str, z, x_real=None, options=None) -> bool:
    """Is the next update of an adaptive optimizer well-posed at this dtype? (SGD always is.)"""
    if opt.name == "sgd":
        return True
    if adaptive_margin(opt, state, grads) <= ADAPTIVE_MARGIN[dtype]:
        return False
    bounds = gradient_bounds(spec, params, step, z, x_real, **(options or {}))
    return noise_margin(opt, state, grads, bounds) > NOISE_MARGIN[dtype]


def forward_ok(case: Case, dtype: str, params=None, z=None, x=None) -> bool:
    spec = case.config.spec
    params = case.initial_state()[0] if params is None else params
    m = KINK_MARGIN[dtype]
    ok = True
    if z is not None:
        ok &= kink_margin(spec.generator, params, "G", z) > m
    if x is not None:
        ok &= kink_margin(spec.discriminator, params, "D", x) > m
    return bool(ok)


def step_options(cfg: TrainConfig, inp: StepInputs, step: int, i: int, *, g_step: bool = False) -> dict:
    """The keyword arguments of the i-th D (or G) update of a round after `step` completed rounds: instance noise
    scaled by that round's sigma, the penalty and WGAN-GP's mix (what reference.train.train_step passes)."""
    sigma = cfg.noise_scale(step)
    if g_step:
        return {"fake_noise": sigma * inp.noise_g[i] if cfg.needs_noise else None,
                "labels": inp.labels_g[i] if cfg.needs_labels else None}
    return {"real_noise": sigma * inp.noise_real[i] if cfg.needs_noise else None,
            "fake_noise": sigma * inp.noise_fake[i] if cfg.needs_noise else None,
            "penalty_spec": cfg.penalty, "mix": inp.mix[i] if cfg.needs_mix else None,
            "real_labels": inp.labels_real[i] if cfg.needs_labels else None,
            "fake_labels": inp.labels_fake[i] if cfg.needs_labels else None}


def _seen(x, noise):
    return x if noise is None else x + noise


def rounds_ok(case: Case, dtype: str, inputs: list[StepInputs], state=None, *, updates=True) -> bool:
    """Replay the rounds in the float64 reference, checking every forward pass for kinks and (with
    updates) every adaptive optimizer step for a denominator at rounding-noise level."""
    cfg, spec = case.config, case.config.spec
    params, d_opt, g_opt, step = case.initial_state() if state is None else state
    km = KINK_MARGIN[dtype]
    logit = spec.loss != "wasserstein"
    for r, inp in enumerate(inputs):
        for i in range(cfg.d_steps):
            opts = step_options(cfg, inp, step + r, i)
            yr, yf = opts["real_labels"], opts["fake_labels"]
            real = _seen(inp.real[i], opts["real_noise"])
            fake = _seen(gan.generate(spec, params, inp.z_d[i], yf), opts["fake_noise"])
            seen = [gan.with_labels(spec, real, yr, "x"), gan.with_labels(spec, fake, yf, "x")]
            seen += [opts["mix"] * real + (1 - opts["mix"]) * fake] if cfg.needs_mix else []
            if (kink_margin(spec.generator, params, "G", gan.with_labels(spec, inp.z_d[i], yf, "z")) <= km
                    or any(kink_margin(spec.discriminator, params, "D", x, logit=logit) <= km for x in seen)):
                return False
            if updates:
                grads, _ = gan.d_loss_and_grads(spec, params, inp.real[i], inp.z_d[i], **opts)
                if not _update_ok(dtype, cfg.d_optimizer, d_opt, grads, spec, params, "d", inp.z_d[i], inp.real[i],
                                  opts):
                    return False
                params, d_opt, _ = gan.d_update(spec, cfg.d_optimizer, params, d_opt, inp.real[i], inp.z_d[i],
                                                cfg.clip_value, **opts)
        for i in range(cfg.g_steps):
            opts = step_options(cfg, inp, step + r, i, g_step=True)
            y = opts["labels"]
            fake = _seen(gan.generate(spec, params, inp.z_g[i], y), opts["fake_noise"])
            if (kink_margin(spec.generator, params, "G", gan.with_labels(spec, inp.z_g[i], y, "z")) <= km
                    or kink_margin(spec.discriminator, params, "D", gan.with_labels(spec, fake, y, "x")) <= km):
                return False
            if updates:
                grads, _ = gan.g_loss_and_grads(spec, params, inp.z_g[i], **opts)
                if not _update_ok(dtype, cfg.g_optimizer, g_opt, grads, spec, params, "g", inp.z_g[i], None, opts):
                    return False
                params, g_opt, _ = gan.g_update(spec, cfg.g_optimizer, params, g_opt, inp.z_g[i], **opts)
        if not updates:
            break
    return True
