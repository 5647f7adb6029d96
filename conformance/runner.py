"""Running the checks as Hypothesis properties against one backend, and collecting what happened."""

import re
import time
import traceback
from dataclasses import asdict, dataclass, field

import hypothesis
import numpy as np
from hypothesis import HealthCheck, Phase, assume, given, settings

from backends.interface import CONDITIONAL

from . import checks as K
from .compare import Comparison, compare, max_abs_error
from .tolerances import FLOAT32_ALLOWANCE, tolerance

PROFILES = {"dev": 25, "ci": 60, "thorough": 500}
"""Examples per check and dtype; the same numbers as the pytest profiles in tests/conftest.py."""


@dataclass
class ExampleOutcome:
    ok: bool
    comparisons: list[Comparison] = field(default_factory=list)
    problem: str | None = None  # a Violation or an exception raised by the backend
    ratio: float = 0.0  # worst err/tol over the quantities that were compared
    max_abs: float = 0.0
    rescued: int = 0  # quantities that passed only through the float32 allowance

    def report(self) -> str:
        lines = [self.problem] if self.problem else []
        lines += ["  " + c.describe() for c in self.comparisons if not c.ok]
        return "\n".join(lines)


@dataclass
class CheckResult:
    backend: str
    check: str
    dtype: str
    status: str  # "pass", "fail", "error" (the suite could not run it), "skip"
    examples: int = 0
    worst_ratio: float = 0.0
    worst_abs: float = 0.0
    rescued: int = 0
    seconds: float = 0.0
    seed: int | None = None
    profile: str | None = None
    case: str | None = None
    report: str | None = None
    reproduce: str | None = None
    blob: str | None = None
    failures: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


_STATE_ENTRY = re.compile(r"^(.*?[DG] opt) .+\.(\w+)$")


def _state_group(name: str):
    """("... D opt", "exp_avg") for an optimizer-state entry's name, else None."""
    match = _STATE_ENTRY.match(name)
    return (match.group(1), match.group(2)) if match else None


def _optimizer_state_scales(expected: dict) -> dict:
    """The largest |entry| of each of a network's optimizer buffers taken together (all of D's exp_avg, ...).

    Optimizer state is compared normwise per network and buffer, not per parameter: an all-zero buffer
    (a structural-zero gradient, e.g. a linear WGAN critic's first bias) holds whatever an adaptive update
    makes of float32 rounding noise, and its only meaningful scale is that of the network's other entries.
    """
    scales: dict = {}
    for name, (kind, e, *_) in expected.items():
        group = _state_group(name)
        if group is not None and kind == "multistep" and np.size(e):
            scales[group] = max(scales.get(group, 0.0), float(np.max(np.abs(e))))
    return scales


def evaluate(check: K.Check, make, dtype: str, case) -> ExampleOutcome:
    """Run one check on one case: the backend under test, the float64 reference, and (only where a float32
    result misses its tolerance) the float32 reference, to tell float32's own error from the backend's."""
    try:
        got = check.run(make, case, dtype, None)
    except K.Violation as v:
        return ExampleOutcome(False, problem=f"contract violated: {v}")
    except Exception as exc:  # noqa: BLE001 - a backend that crashes fails the check, with its reason
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return ExampleOutcome(False, problem=f"the backend raised {type(exc).__name__}: {exc} "
                                             f"(at {where.filename}:{where.lineno})")
    expected = check.run(K.reference_factory("float64"), case, dtype, got)
    group_scale = _optimizer_state_scales(expected)
    comps = []
    for name, (kind, e, *hint) in expected.items():
        if name.startswith("_"):
            continue
        if name not in got:
            comps.append(Comparison(name, kind, False, (), problem="missing from the backend's output"))
            continue
        if not hint and _state_group(name) in group_scale:
            hint = [group_scale[_state_group(name)]]
        comps.append(compare(name, kind, e, got[name][1], tolerance(dtype, kind), *hint))
    rescued = 0
    failed = [c for c in comps if not c.ok and c.problem is None and c.kind != "exact"]
    if dtype == "float32" and failed:
        ref32 = check.run(K.reference_factory("float32"), case, dtype, got)
        for c in failed:
            e32 = max_abs_error(expected[c.quantity][1], ref32[c.quantity][1])
            c.ref32_max_abs = e32
            closer = "the backend" if c.max_abs < e32 else "the float32 reference"
            c.verdict = (f"backend max abs err {c.max_abs:.3e} vs the reference run in float32 {e32:.3e}: "
                         f"{closer} is closer to float64")
            if c.max_abs <= FLOAT32_ALLOWANCE * e32:
                c.ok, rescued = True, rescued + 1
    numeric = [c for c in comps if c.problem is None]
    ok = all(c.ok for c in comps)
    return ExampleOutcome(ok, comps, ratio=max((c.ratio for c in numeric), default=0.0),
                          max_abs=max((c.max_abs for c in numeric), default=0.0), rescued=rescued)


class _Failed(AssertionError):
    def __init__(self, outcome: ExampleOutcome):
        super().__init__(outcome.report())
        self.outcome = outcome


def _blob(exc: BaseException) -> str | None:
    for note in getattr(exc, "__notes__", []):
        if "@reproduce_failure" in note:
            return note[note.index("@reproduce_failure"):].strip()
    return None


def run_check(backend_cls, check_name: str, dtype: str, *, max_examples: int, seed: int,
              backend_name: str | None = None, profile: str | None = None, shrink: bool = True,
              reproduce_backend: str | None = None) -> CheckResult:
    """Run one check on one backend and dtype as a Hypothesis property; never raises for a backend's failure."""
    check = K.CHECKS[check_name]
    name = backend_name or getattr(backend_cls, "name", backend_cls.__name__)
    if profile is not None:  # a profile's count is scaled by the backend's share; an explicit count is not
        share = getattr(backend_cls, "conformance_examples_share", 1.0) * check.examples_share
        max_examples = max(1, round(max_examples * share))
    make = lambda config: backend_cls(config, dtype=dtype)  # noqa: E731
    features = frozenset(getattr(backend_cls, "features", frozenset()))
    if check.needs and not features & check.needs:
        what = "a conditional GAN" if CONDITIONAL in check.needs else "instance noise or a gradient penalty"
        return CheckResult(name, check_name, dtype, "skip", seed=seed, profile=profile,
                           report=f"{name} does not implement {what} (Backend.features)")
    tally = {"examples": 0, "worst_ratio": 0.0, "worst_abs": 0.0, "rescued": 0, "last_case": None}

    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target] + ([Phase.shrink] if shrink else [])

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=False, print_blob=True,
              suppress_health_check=list(HealthCheck), phases=phases)
    @given(case=check.strategy(dtype, features))
    def prop(case):
        assume(check.well_posed(case, dtype))
        outcome = evaluate(check, make, dtype, case)
        tally["examples"] += 1
        tally["worst_ratio"] = max(tally["worst_ratio"], outcome.ratio)
        tally["worst_abs"] = max(tally["worst_abs"], outcome.max_abs)
        tally["rescued"] += outcome.rescued
        tally["last_case"] = case
        if not outcome.ok:
            raise _Failed(outcome)

    prop = hypothesis.seed(seed)(prop)
    command = (f"python -m conformance --backend {reproduce_backend or name} --check {check_name} --dtype {dtype} "
               f"--seed {seed}" + (f" --profile {profile}" if profile else f" --examples {max_examples}"))
    result = CheckResult(name, check_name, dtype, "pass", seed=seed, profile=profile)
    start = time.perf_counter()
    try:
        prop()
    except _Failed as failure:
        result.status = "fail"
        result.report = failure.outcome.report()
        result.failures = [c.to_dict() for c in failure.outcome.comparisons if not c.ok]
        result.case = tally["last_case"].describe() if tally["last_case"] else None
        result.reproduce = command
        result.blob = _blob(failure)
    except hypothesis.errors.Unsatisfiable as exc:
        result.status, result.report = "error", f"too few well-posed cases were generated: {exc}"
    result.seconds = time.perf_counter() - start
    result.examples = tally["examples"]
    result.worst_ratio, result.worst_abs, result.rescued = tally["worst_ratio"], tally["worst_abs"], tally["rescued"]
    return result
