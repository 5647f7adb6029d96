"""Comparing one array from the backend under test with the reference's, with a report worth reading."""

from dataclasses import asdict, dataclass

import numpy as np

from .tolerances import Tolerance


@dataclass
class Comparison:
    """The outcome of comparing one named quantity. `ratio` = worst |a - e| / allowed (<= 1 passes)."""

    quantity: str
    kind: str
    ok: bool
    shape: tuple
    max_abs: float = 0.0
    max_rel: float = 0.0
    where: tuple | None = None  # index of the worst violation (or of the largest error when all pass)
    expected_at: float | None = None
    actual_at: float | None = None
    n_bad: int = 0
    n_total: int = 0
    ratio: float = 0.0
    problem: str | None = None  # shape / dtype / NaN trouble, when the numbers could not be compared
    ref32_max_abs: float | None = None  # the float32 reference's own error, when it was consulted
    verdict: str | None = None  # for float32: who is closer to float64, the backend or float32 itself

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["where"] = None if self.where is None else list(self.where)
        return d

    def describe(self) -> str:
        if self.problem:
            return f"{self.quantity}: {self.problem}"
        text = (f"{self.quantity} [{self.kind}] shape {self.shape}: {self.n_bad}/{self.n_total} elements out of "
                f"tolerance; max abs err {self.max_abs:.3e}, max rel err {self.max_rel:.3e}, worst at index "
                f"{self.where} (expected {self.expected_at!r}, got {self.actual_at!r}), err/tol {self.ratio:.3g}")
        if self.verdict:
            text += f"\n      float32 check: {self.verdict}"
        return text


def compare(quantity: str, kind: str, expected, actual, tol: Tolerance, scale: float = 0.0) -> Comparison:
    """Compare actual against expected (both array-like) under tol; never raises for bad input.

    scale: the magnitude of the terms the quantity was computed from, when that exceeds max|expected|
    (a loss that is a difference of means, such as the Wasserstein loss, can be far smaller than its terms).
    """
    e = np.asarray(expected, dtype=np.float64)
    try:
        a = np.asarray(actual)
    except Exception as exc:  # noqa: BLE001 - any failure to read the backend's output is a finding
        return Comparison(quantity, kind, False, e.shape, problem=f"could not be read as an array: {exc}")
    if a.shape != e.shape:
        return Comparison(quantity, kind, False, e.shape, problem=f"shape {a.shape}, expected {e.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        return Comparison(quantity, kind, False, e.shape, problem=f"dtype {a.dtype} is not numeric")
    a = a.astype(np.float64)
    n = e.size
    if n == 0:
        return Comparison(quantity, kind, True, e.shape)
    nonfinite = (~np.isfinite(a) & np.isfinite(e)) | (~np.isfinite(e) & ~((a == e) | (np.isnan(a) & np.isnan(e))))
    if nonfinite.any():
        idx = tuple(int(i) for i in np.argwhere(nonfinite)[0])
        return Comparison(quantity, kind, False, e.shape, where=idx, expected_at=float(e[idx]),
                          actual_at=float(a[idx]), n_bad=int(nonfinite.sum()), n_total=n, ratio=float("inf"),
                          problem=f"{int(nonfinite.sum())} NaN/Inf entries that the reference does not have, "
                                  f"first at index {idx} (expected {float(e[idx])!r}, got {float(a[idx])!r})")
    finite = np.isfinite(e)  # where e is NaN/Inf, a equals it (checked above)
    a, e = np.where(finite, a, 0.0), np.where(finite, e, 0.0)
    err = np.abs(a - e)
    scale = max(float(np.max(np.abs(e))), scale, tol.floor)
    allowed = tol.rtol * np.abs(e) + tol.atol * scale
    bad = err > allowed
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(err == 0, 0.0, err / allowed)
        rel = np.where(err == 0, 0.0, err / np.abs(e))
    worst = np.unravel_index(int(np.argmax(ratios)), e.shape) if e.ndim else ()
    idx = tuple(int(i) for i in worst)
    return Comparison(quantity, kind, not bad.any(), e.shape, max_abs=float(err.max()), max_rel=float(rel.max()),
                      where=idx, expected_at=float(e[idx]), actual_at=float(a[idx]), n_bad=int(bad.sum()),
                      n_total=n, ratio=float(ratios.max()))


def max_abs_error(expected, actual) -> float:
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        return float("inf")
    return float(np.max(np.abs(a - e))) if e.size else 0.0
