"""The suite's results as a table (backend x check) and as JSON."""

import json
import math

from .runner import CheckResult


def _fmt(x: float) -> str:
    return "-" if x == 0 or not math.isfinite(x) else f"{x:.2g}"


def table(results: list[CheckResult], skipped: dict[str, str] | None = None) -> str:
    """One line per (backend, dtype, check): status, examples run, worst err/tol, worst abs error, time."""
    head = f"{'backend':<22} {'dtype':<8} {'check':<15} {'result':<6} {'examples':>8} {'err/tol':>8} " \
           f"{'max abs':>8} {'f32 rescue':>10} {'time':>7}"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.backend:<22} {r.dtype:<8} {r.check:<15} {r.status.upper():<6} {r.examples:>8} "
                     f"{_fmt(r.worst_ratio):>8} {_fmt(r.worst_abs):>8} {r.rescued:>10} {r.seconds:>6.1f}s")
    for name, reason in (skipped or {}).items():
        lines.append(f"{name:<22} {'':<8} {'(all)':<15} SKIP   {reason}")
    reasons = sorted({f"{r.backend}: {r.report}" for r in results if r.status == "skip" and r.report})
    lines += [f"skipped: {reason}" for reason in reasons]
    return "\n".join(lines)


def failures(results: list[CheckResult]) -> str:
    out = []
    for r in results:
        if r.status in ("fail", "error"):
            out.append(f"\nFAILED {r.check} on backend {r.backend}, dtype {r.dtype}:\n{r.report}")
            if r.case:
                out.append(f"  case: {r.case}")
            if r.reproduce:
                out.append(f"  reproduce: {r.reproduce}")
            if r.blob:
                out.append(f"  or add to a @given test: {r.blob}")
    return "\n".join(out)


def write_json(path: str, results: list[CheckResult], skipped: dict[str, str], extra: dict | None = None) -> None:
    payload = {"results": [r.to_dict() for r in results], "skipped": skipped, **(extra or {})}
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=float)
