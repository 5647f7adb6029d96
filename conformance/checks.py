"""The checks: one function per check, each run twice on the same generated case, once with the
backend under test and once with the float64 reference, returning named quantities to compare.

A check function has the signature  run(make, case, dtype, peer) -> {name: (kind, array)}:
    make(config) -> a fresh Backend of the kind being run (the backend under test, or the reference)
    case         the generated Case (cases.py)
    dtype        the dtype of the backend under test (the reference uses it only to round "exact" values)
    peer         None when running the backend under test; when running the reference, the backend's own
                 outputs (a few checks replay part of the reference from the backend's state)
It raises Violation for a broken contract that is not a numerical difference (wrong parameter names,
state changed by a read-only call, a clipped value outside [-c, c], a freezing violation).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from backends.interface import ALL_FEATURES, CONDITIONAL, ReferenceBackend
from reference import gan
from reference.train import StepInputs

from . import cases as C


class Violation(AssertionError):
    """A contract of the interface broken in a way no tolerance covers."""


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    strategy: Callable[[str, frozenset], st.SearchStrategy]  # (dtype, backend's features) -> strategy of Case
    run: Callable
    well_posed: Callable[[C.Case, str], bool]  # reject cases where the math has no single answer
    needs: frozenset = frozenset()  # run only on backends listing at least one of these features (else skip)
    examples_share: float = 1.0  # the share of a profile's examples: < 1 for a check that is two checks in one


def _loaded(make, case):
    backend = make(case.config)
    backend.load_state(*case.initial_state())
    return backend


def _state_outputs(backend, prefix: str = "") -> dict:
    out = {f"{prefix}{k}": ("multistep", v) for k, v in backend.export_params().items()}
    d_opt, g_opt = backend.export_optimizer_state()
    for who, state in (("D opt", d_opt), ("G opt", g_opt)):
        for k, v in state.items():
            out[f"{prefix}{who} {k}"] = ("exact" if k == "step" else "multistep", v)
    out[f"{prefix}step"] = ("exact", np.asarray(backend.step))
    return out


def _metrics_outputs(metrics, prefix: str = "", scale: float = 1.0) -> dict:
    """StepMetrics as quantities. Losses and the critic gap are differences of means of D's outputs, so their
    error scales with those outputs (`scale`, estimated by the reference), not with their own size."""
    out = {}
    for k, v in metrics.to_dict().items():
        out[f"{prefix}metrics.{k}"] = ("exact", np.asarray(float(v))) if k == "step" else (
            "multistep", np.asarray(float(v)), scale)
    return out


def _output_scale(case, inputs: list) -> float:
    """1 + the largest |D output| on the rounds' real batches and fakes at the initial parameters (float64),
    with their labels for a conditional GAN."""
    spec, params = case.config.spec, case.initial_state()[0]
    largest = 0.0
    for inp in inputs:
        for i, (real, z) in enumerate(zip(inp.real, inp.z_d, strict=True)):
            yr, yf = (None, None) if inp.labels_real is None else (inp.labels_real[i], inp.labels_fake[i])
            fake = gan.generate(spec, params, z, yf)
            outs = [gan.discriminate(spec, params, real, yr), gan.discriminate(spec, params, fake, yf)]
            largest = max([largest] + [float(np.max(np.abs(o))) for o in outs])
    return 1.0 + largest


def _expect_names(what: str, got: dict, expected) -> None:
    got_names, expected = list(got), list(expected)
    if sorted(got_names) != sorted(expected):
        raise Violation(f"{what} returned names {got_names}, expected exactly {expected}")


# ----- forward -----

def run_forward(make, case, dtype, peer):
    b = _loaded(make, case)
    return {"generate(z)": ("value", b.generate(case.z())), "discriminate(x)": ("value", b.discriminate(case.x()))}


def forward_well_posed(case, dtype):
    return C.forward_ok(case, dtype, z=case.z(), x=case.x())


# ----- losses on logits -----

def run_losses(make, case, dtype, peer):
    b = _loaded(make, case)
    real, fake = case.logits(4), case.logits(5)
    d_value, d_real, d_fake = b.d_loss(real, fake)
    g_value, g_fake = b.g_loss(fake)
    scale = float(max(np.max(np.abs(real)), np.max(np.abs(fake))))  # Wasserstein: a difference of means
    per = 1.0 / len(fake)  # every logit gradient is (something in [-1, 1]) / B
    return {"d_loss": ("value", np.asarray(d_value), scale), "d_loss d/d real_out": ("value", d_real, per),
            "d_loss d/d fake_out": ("value", d_fake, per), "g_loss": ("value", np.asarray(g_value), scale),
            "g_loss d/d fake_out": ("value", g_fake, per)}


# ----- gradients of the D step and the G step -----

def run_d_grads(make, case, dtype, peer):
    b = _loaded(make, case)
    inp = case.step_inputs()
    loss, grads = b.d_grads(inp.real[0], inp.z_d[0])
    _expect_names("d_grads", grads, gan.network(case.config.spec.param_shapes(), "D"))
    scale = _output_scale(case, [inp])
    return {"D loss": ("value", np.asarray(loss), scale), **{f"grad {k}": ("gradient", v) for k, v in grads.items()}}


def run_g_grads(make, case, dtype, peer):
    b = _loaded(make, case)
    loss, grads = b.g_grads(case.step_inputs().z_g[0])
    _expect_names("g_grads", grads, gan.network(case.config.spec.param_shapes(), "G"))
    scale = _output_scale(case, [case.step_inputs()])
    return {"G loss": ("value", np.asarray(loss), scale), **{f"grad {k}": ("gradient", v) for k, v in grads.items()}}


def grads_well_posed(case, dtype):
    return C.rounds_ok(case, dtype, [case.step_inputs()], updates=False)


# ----- one round, a trajectory of rounds, train_rounds -----

def run_step(make, case, dtype, peer):
    b = _loaded(make, case)
    metrics = b.train_step(case.step_inputs())
    return {**_state_outputs(b), **_metrics_outputs(metrics, scale=_output_scale(case, [case.step_inputs()]))}


def step_well_posed(case, dtype):
    return C.rounds_ok(case, dtype, [case.step_inputs()])


def run_trajectory(make, case, dtype, peer):
    b = _loaded(make, case)
    out, scale = {}, _output_scale(case, [case.step_inputs(r) for r in range(case.rounds)])
    for r in range(case.rounds):
        metrics = b.train_step(case.step_inputs(r))
        out.update(_state_outputs(b, f"round {r + 1}: "))
        out.update(_metrics_outputs(metrics, f"round {r + 1}: ", scale))
    return out


def trajectory_well_posed(case, dtype):
    return C.rounds_ok(case, dtype, [case.step_inputs(r) for r in range(case.rounds)])


def _rounds_arrays(case):
    """A small dataset and (index, z_d, z_g) for train_rounds, consistent with step_inputs' shapes."""
    cfg, rng = case.config, case.rng(7)
    data = rng.standard_normal((3 * case.batch + 1, cfg.spec.data_size)) * case.data_scale
    index = rng.integers(0, len(data), size=(case.rounds, cfg.d_steps, case.batch))
    z_d = rng.standard_normal((case.rounds, cfg.d_steps, case.batch, cfg.spec.z_size))
    z_g = rng.standard_normal((case.rounds, cfg.g_steps, case.batch, cfg.spec.z_size))
    return data, index, z_d, z_g


def run_train_rounds(make, case, dtype, peer):
    b = _loaded(make, case)
    data, index, z_d, z_g = _rounds_arrays(case)
    b.set_data(data)
    metrics = b.train_rounds(index, z_d, z_g)
    if len(metrics) != case.rounds:
        raise Violation(f"train_rounds returned {len(metrics)} metrics for {case.rounds} rounds")
    out = _state_outputs(b)
    scale = _output_scale(case, [StepInputs(data[index[r]], z_d[r], z_g[r]) for r in range(case.rounds)])
    for r, m in enumerate(metrics):
        out.update(_metrics_outputs(m, f"round {r + 1}: ", scale))
    return out


def train_rounds_well_posed(case, dtype):
    data, index, z_d, z_g = _rounds_arrays(case)
    return C.rounds_ok(case, dtype, [StepInputs(data[index[r]], z_d[r], z_g[r]) for r in range(case.rounds)])


# ----- remedies for failure to converge: instance noise and gradient penalties -----

def run_penalty_grads(make, case, dtype, peer):
    b = _loaded(make, case)
    cfg, inp, step = case.config, case.step_inputs(), case.initial_state()[3]
    d_opts = C.step_options(cfg, inp, step, 0)
    d_loss, d_grads = b.d_grads(inp.real[0], inp.z_d[0], real_noise=d_opts["real_noise"],
                                fake_noise=d_opts["fake_noise"], mix=d_opts["mix"])
    _expect_names("d_grads", d_grads, gan.network(cfg.spec.param_shapes(), "D"))
    g_loss, g_grads = b.g_grads(inp.z_g[0], **C.step_options(cfg, inp, step, 0, g_step=True))
    _expect_names("g_grads", g_grads, gan.network(cfg.spec.param_shapes(), "G"))
    scale = max(_output_scale(case, [inp]), abs(float(d_loss)))  # the penalty can dominate D's loss
    return {"D loss": ("value", np.asarray(d_loss), scale), "G loss": ("value", np.asarray(g_loss), scale),
            **{f"D grad {k}": ("gradient", v) for k, v in d_grads.items()},
            **{f"G grad {k}": ("gradient", v) for k, v in g_grads.items()}}


def penalty_grads_well_posed(case, dtype):
    return C.rounds_ok(case, dtype, [case.step_inputs()], updates=False)


def _rounds_both_ways(make, case, inputs: list, scale: float, b=None) -> dict:
    """The rounds by train_step (on `b`, or a freshly loaded backend), then the same rounds on a fresh backend by
    set_data + train_rounds: the real batches (and their labels) become the data, indexed in order, and every
    other array of StepInputs is stacked into train_rounds' extras. Everything is compared after each round."""
    b = _loaded(make, case) if b is None else b
    out = {}
    for r, inp in enumerate(inputs):
        metrics = b.train_step(inp)
        out.update(_state_outputs(b, f"train_step round {r + 1}: "))
        out.update(_metrics_outputs(metrics, f"train_step round {r + 1}: ", scale))
    data = np.concatenate([inp.real.reshape(-1, inp.real.shape[-1]) for inp in inputs])
    index = np.arange(len(data)).reshape(case.rounds, case.config.d_steps, case.batch)
    extras = {name: np.stack([getattr(inp, name) for inp in inputs])
              for name in ("noise_real", "noise_fake", "noise_g", "mix", "labels_fake", "labels_g")
              if getattr(inputs[0], name) is not None}
    b = _loaded(make, case)
    if inputs[0].labels_real is None:
        b.set_data(data)
    else:
        b.set_data(data, np.concatenate([inp.labels_real.reshape(-1) for inp in inputs]))
    metrics = b.train_rounds(index, np.stack([i.z_d for i in inputs]), np.stack([i.z_g for i in inputs]), **extras)
    if len(metrics) != case.rounds:
        raise Violation(f"train_rounds returned {len(metrics)} metrics for {case.rounds} rounds")
    out.update(_state_outputs(b, "train_rounds: "))
    for r, m in enumerate(metrics):
        out.update(_metrics_outputs(m, f"train_rounds round {r + 1}: ", scale))
    return out


def run_remedies_rounds(make, case, dtype, peer):
    inputs = [case.step_inputs(r) for r in range(case.rounds)]
    return _rounds_both_ways(make, case, inputs, _output_scale(case, inputs))


def remedies_rounds_well_posed(case, dtype):
    return C.rounds_ok(case, dtype, [case.step_inputs(r) for r in range(case.rounds)])


# ----- conditional GANs -----

def run_conditional(make, case, dtype, peer):
    cfg, inputs = case.config, [case.step_inputs(r) for r in range(case.rounds)]
    inp, step = inputs[0], case.initial_state()[3]
    scale = _output_scale(case, inputs)
    b = _loaded(make, case)
    d_opts, g_opts = C.step_options(cfg, inp, step, 0), C.step_options(cfg, inp, step, 0, g_step=True)
    out = {"generate(z, labels)": ("value", b.generate(inp.z_g[0], labels=inp.labels_g[0])),
           "discriminate(x, labels)": ("value", b.discriminate(inp.real[0], labels=inp.labels_real[0]))}
    d_loss, d_grads = b.d_grads(inp.real[0], inp.z_d[0], real_noise=d_opts["real_noise"],
                                fake_noise=d_opts["fake_noise"], real_labels=d_opts["real_labels"],
                                fake_labels=d_opts["fake_labels"])
    g_loss, g_grads = b.g_grads(inp.z_g[0], fake_noise=g_opts["fake_noise"], labels=g_opts["labels"])
    _expect_names("d_grads", d_grads, gan.network(cfg.spec.param_shapes(), "D"))
    _expect_names("g_grads", g_grads, gan.network(cfg.spec.param_shapes(), "G"))
    out |= {"D loss": ("value", np.asarray(d_loss), scale), "G loss": ("value", np.asarray(g_loss), scale)}
    out |= {f"D grad {k}": ("gradient", v) for k, v in d_grads.items()}
    out |= {f"G grad {k}": ("gradient", v) for k, v in g_grads.items()}
    return out | _rounds_both_ways(make, case, inputs, scale, b)


def conditional_well_posed(case, dtype):
    inputs = [case.step_inputs(r) for r in range(case.rounds)]
    inp = inputs[0]
    spec, params = case.config.spec, case.initial_state()[0]
    x = gan.with_labels(spec, inp.real[0], inp.labels_real[0], "x")
    return (C.kink_margin(spec.discriminator, params, "D", x) > C.KINK_MARGIN[dtype]
            and C.rounds_ok(case, dtype, inputs))


# ----- WGAN weight clipping -----

def run_clipping(make, case, dtype, peer):
    b = _loaded(make, case)
    b.train_step(case.step_inputs())
    clip = case.config.clip_value
    c = max(clip, float(np.asarray(clip, dtype=dtype)))  # c, or c rounded up to the backend's dtype
    params = b.export_params()
    for name, v in gan.network(params, "D").items():
        if np.any(np.abs(v) > c):
            i = tuple(int(j) for j in np.unravel_index(int(np.argmax(np.abs(v))), v.shape))
            raise Violation(f"critic parameter {name} has {int(np.sum(np.abs(v) > c))} entries outside "
                            f"[-c, c] = [-{c}, {c}] after the round, e.g. {float(v[i])!r} at index {i}")
    return {k: ("multistep", v) for k, v in params.items()}


# ----- freezing -----

def _snapshot(b):
    d_opt, g_opt = b.export_optimizer_state()
    return {**{f"param {k}": v for k, v in b.export_params().items()},
            **{f"D opt {k}": v for k, v in d_opt.items()}, **{f"G opt {k}": v for k, v in g_opt.items()},
            "step": np.asarray(b.step)}


def _bitwise_diff(before: dict, after: dict) -> list[str]:
    return [k for k in before if k not in after or not np.array_equal(before[k], after[k])]


def run_freezing(make, case, dtype, peer):
    cfg = case.config
    inp = case.step_inputs()
    if peer is None:  # the backend under test: the contracts, bitwise
        b = _loaded(make, case)
        before = _snapshot(b)
        b.d_grads(inp.real[0], inp.z_d[0])
        b.g_grads(inp.z_g[0])
        changed = _bitwise_diff(before, _snapshot(b))
        if changed:
            raise Violation(f"d_grads/g_grads must not change the state, but changed {changed[:5]}")
        b.train_step(inp)
        other = _loaded(make, case)  # same real batches and z_d, different z_g
        other.train_step(case.step_inputs(z_g_stream=99))
        d_names = [k for k in before if k.startswith(("param D.", "D opt"))]
        mine, theirs = _snapshot(b), _snapshot(other)
        changed = _bitwise_diff({k: mine[k] for k in d_names}, theirs)
        if changed:
            raise Violation("D's parameters/optimizer state after a round depend on the G steps' noise z_g, so the "
                            f"G steps changed D: {changed[:5]}")
        params = b.export_params()
        _, g_opt = b.export_optimizer_state()
        if float(g_opt["step"]) != float(case.initial_state()[2]["step"]) + cfg.g_steps:
            raise Violation(f"G's optimizer counted {float(g_opt['step'])} updates, expected "
                            f"{float(case.initial_state()[2]['step']) + cfg.g_steps}")
        return {f"G after the round: {k}": ("multistep", v) for k, v in gan.network(params, "G").items()} | {
            "_D after the round": ("private", gan.network(params, "D"))}
    # the reference: G's m updates replayed from the backend's own D after the round, with the initial G
    params, d_opt, g_opt, step = case.initial_state()
    d_after = peer["_D after the round"][1]
    ref = make(cfg)
    ref_params = {**gan.network(params, "G"), **{k: np.asarray(v, dtype=np.float64) for k, v in d_after.items()}}
    ref.load_state(ref_params, d_opt, g_opt, step)
    for i in range(cfg.g_steps):  # G updates only: the reference's own g_update, D frozen by construction
        state = ref._state
        new_params, new_g, _ = gan.g_update(cfg.spec, cfg.g_optimizer, state.params, state.g_opt_state, inp.z_g[i])
        ref.load_state(new_params, state.d_opt_state, new_g, step)
    out = ref.export_params()
    return {f"G after the round: {k}": ("multistep", v) for k, v in gan.network(out, "G").items()}


# ----- state in and out -----

def run_state(make, case, dtype, peer):
    params, d_opt, g_opt, step = case.initial_state()
    if peer is not None:  # what an exact round trip at the backend's dtype gives
        r = lambda d: {k: np.asarray(v, dtype=dtype).astype(np.float64) for k, v in d.items()}  # noqa: E731
        init = gan.init_params(case.config.spec, case.seed)
        return ({f"init {k}": ("exact", v) for k, v in r(init).items()}
                | {f"loaded {k}": ("exact", v) for k, v in r(params).items()}
                | {f"D opt {k}": ("exact", v) for k, v in r(d_opt).items()}
                | {f"G opt {k}": ("exact", v) for k, v in r(g_opt).items()} | {"step": ("exact", np.asarray(step))})
    b = make(case.config)
    b.init(case.seed)
    out = {f"init {k}": ("exact", v) for k, v in b.export_params().items()}
    b.load_state(params, d_opt, g_opt, step)
    out |= {f"loaded {k}": ("exact", v) for k, v in b.export_params().items()}
    d_out, g_out = b.export_optimizer_state()
    out |= {f"D opt {k}": ("exact", v) for k, v in d_out.items()}
    out |= {f"G opt {k}": ("exact", v) for k, v in g_out.items()} | {"step": ("exact", np.asarray(b.step))}
    for what, bad in _bad_states(params):
        try:
            make(case.config).load_state(bad, d_opt, g_opt, step)
        except (ValueError, TypeError):
            continue
        except Exception as exc:  # noqa: BLE001
            raise Violation(f"load_state with {what} raised {type(exc).__name__}, not ValueError/TypeError") from exc
        raise Violation(f"load_state accepted parameters with {what}")
    return out


def _bad_states(params):
    first = next(iter(params))
    yield f"{first} missing", {k: v for k, v in params.items() if k != first}
    yield f"{first} reshaped to {params[first].shape + (1,)}", {**params, first: params[first][..., None]}
    yield "an unexpected extra entry", {**params, "G.99.weight": np.zeros((1, 1))}


def always(case, dtype):
    return True


def _s(sizes=C.BIG, **kw):
    return lambda dtype, features=frozenset(): C.cases(sizes, **kw)


def _remedies(sizes):
    return lambda dtype, features=frozenset(): C.cases(sizes, remedies=frozenset(features))


def _conditional(sizes):
    return lambda dtype, features=frozenset(): C.cases(sizes, remedies=frozenset(features), conditional=True)


CHECKS: dict[str, Check] = {c.name: c for c in [
    Check("state", "init(seed) and load_state/export round-trip exactly (at the backend's dtype); bad "
          "parameter dicts are refused", _s(C.SMALL), run_state, always),
    Check("forward", "generate(z) and discriminate(x)", _s(), run_forward, forward_well_posed),
    Check("losses", "d_loss and g_loss values and gradients on logits up to 1e4 in size",
          _s(C.SMALL, logits=True), run_losses, always),
    Check("d_grads", "D's loss and the gradient of every D parameter (G frozen)", _s(), run_d_grads,
          grads_well_posed),
    Check("g_grads", "G's loss and the gradient of every G parameter, through D", _s(), run_g_grads,
          grads_well_posed),
    Check("step", "one round (k D updates, m G updates): parameters, both optimizer states, metrics",
          _s(C.SMALL), run_step, step_well_posed),
    Check("trajectory", "2-4 rounds from the same state, every parameter and buffer compared after each round",
          _s(C.TRAJECTORY), run_trajectory, trajectory_well_posed),
    Check("train_rounds", "set_data + train_rounds equal train_step round by round", _s(C.TRAJECTORY),
          run_train_rounds, train_rounds_well_posed),
    Check("clipping", "WGAN clipping: every critic weight and bias within [-c, c] after a round, equal to the "
          "reference", _s(C.SMALL, clip="always"), run_clipping, step_well_posed),
    Check("freezing", "d_grads/g_grads change nothing; G steps do not touch D (bitwise); G changes only by G's "
          "updates from the round's D", _s(C.SMALL), run_freezing, step_well_posed),
    Check("penalty_grads", "with a gradient penalty and/or instance noise: D's and G's loss and every gradient "
          "(double backpropagation)", _remedies(C.SMALL), run_penalty_grads, penalty_grads_well_posed, ALL_FEATURES),
    Check("remedies_rounds", "with a penalty and/or (annealed) instance noise: rounds by train_step and by "
          "train_rounds, everything after each round", _remedies(C.TRAJECTORY), run_remedies_rounds,
          remedies_rounds_well_posed, ALL_FEATURES, examples_share=0.5),
    Check("conditional", "a conditional GAN: generate/discriminate/d_grads/g_grads with labels, then rounds by "
          "train_step and by set_data(data, labels) + train_rounds", _conditional(C.TRAJECTORY), run_conditional,
          conditional_well_posed, frozenset({CONDITIONAL}), examples_share=0.5),
]}


def reference_factory(dtype: str = "float64"):
    return lambda config: ReferenceBackend(config, dtype=dtype)
