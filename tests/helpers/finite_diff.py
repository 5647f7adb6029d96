"""Finite-difference gradients, the independent second implementation every hand-written gradient is held to.

Central differences in float64:

    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / ((x_i + h) - (x_i - h)),      h = eps * max(1, |x_i|)

The truncation error is O(h^2 f''') and the rounding error O(u |f| / h) with u = 2^-52, so eps = 1e-5
gives about 1e-10 absolute error for an f of order one: ample headroom under a 1e-6 relative tolerance.
The denominator is the step actually taken (x_i + h and x_i - h are rounded), not 2h.

order=4 uses the fourth-order central stencil (-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / 12h: truncation
O(h^4), so a larger step (eps = 1e-4) cuts the rounding error to ~1e-12 |f| for twice the evaluations. Use
it when some gradient entries are many orders of magnitude smaller than the function value.

Central differences are only right where f is smooth over [x - h, x + h]: keep inputs away from the
kinks of ReLU and LeakyReLU (see `min_abs_preactivation` in the callers' tests).

    numerical_derivative   elementwise f: R -> R applied to an array (activations)
    numerical_gradient     scalar f of one array
    numerical_gradients    scalar f of a dict of arrays (parameters), one entry at a time
    noise_floor            the differences' rounding error for a given function value: an atol
    relative_error         ||a - b|| / max(||a||, ||b||)
    assert_gradients_close compares arrays or dicts of arrays and names the entry that is off
"""

from collections.abc import Callable, Iterable, Mapping

import numpy as np

DEFAULT_EPS = 1e-5


def _steps(x: np.ndarray, eps: float):
    """The perturbed points x + h and x - h for h = eps * max(1, |x|), elementwise."""
    h = eps * np.maximum(1.0, np.abs(x))
    return x + h, x - h


def numerical_derivative(f: Callable[[np.ndarray], np.ndarray], x, eps: float = DEFAULT_EPS) -> np.ndarray:
    """f'(x) for an elementwise function f, by central differences, all entries at once."""
    x = np.asarray(x, dtype=np.float64)
    plus, minus = _steps(x, eps)
    return (np.asarray(f(plus)) - np.asarray(f(minus))) / (plus - minus)


def numerical_gradient(f: Callable[[np.ndarray], float], x, eps: float = DEFAULT_EPS, order: int = 2) -> np.ndarray:
    """The gradient of a scalar function f at the array x, one central difference per entry.

    f is called with a float64 copy of x that has one entry perturbed; x itself is never modified.
    order: 2 for (f(x+h) - f(x-h)) / 2h, or 4 for the fourth-order stencil (see the module docstring).
    """
    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    x = np.array(x, dtype=np.float64, copy=True)
    grad = np.empty_like(x)
    flat, grad_flat = x.reshape(-1), grad.reshape(-1)  # views into x and grad

    def at(i, value):
        flat[i] = value
        return float(f(x))

    for i in range(flat.size):
        original = flat[i]
        plus, minus = _steps(original, eps)
        if order == 2:
            grad_flat[i] = (at(i, plus) - at(i, minus)) / (plus - minus)
        else:
            step = (plus - minus) / 2  # the step actually taken, after rounding
            stencil = -at(i, original + 2 * step) + 8 * at(i, plus) - 8 * at(i, minus) + at(i, original - 2 * step)
            grad_flat[i] = stencil / (12 * step)
        flat[i] = original
    return grad


def numerical_gradients(f: Callable[[dict], float], params: Mapping[str, np.ndarray],
                        names: Iterable[str] | None = None, eps: float = DEFAULT_EPS,
                        order: int = 2) -> dict[str, np.ndarray]:
    """The gradient of a scalar function of a parameter dict with respect to each of `names` (default: all).

    f receives a dict with the same keys as params; the entry being differentiated is a perturbed copy,
    the others are float64 copies of params' arrays. params itself is never modified.
    """
    base = {k: np.array(v, dtype=np.float64, copy=True) for k, v in params.items()}
    names = list(base) if names is None else list(names)
    unknown = [n for n in names if n not in base]
    if unknown:
        raise KeyError(f"no such parameters: {unknown}")
    return {name: numerical_gradient(lambda a, name=name: f({**base, name: a}), base[name], eps, order)
            for name in names}


def noise_floor(value: float, eps: float = 1e-4, order: int = 4) -> float:
    """A bound on the differences' rounding error for a function whose value is `value`, for use as an atol.

    Each entry's rounding error is about c u |f| / h with u = 2.2e-16, h = eps * max(1, |x|) >= eps and
    c = 1 (order 2) or (1 + 8 + 8 + 1) / 12 = 1.5 (order 4). This returns 10x that: ~3e-11 |f| at order 4 with
    eps 1e-4, far below any gradient that matters and above the arithmetic's noise.
    """
    c = 1.5 if order == 4 else 1.0
    return 10 * c * 2.2e-16 * max(1.0, abs(float(value))) / eps


def relative_error(a, b, floor: float = 1e-300) -> float:
    """||a - b|| / max(||a||, ||b||) in the Euclidean norm over all entries; 0 when both are zero."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    diff = float(np.linalg.norm((a - b).ravel()))
    if diff == 0.0:
        return 0.0
    return diff / max(float(np.linalg.norm(a.ravel())), float(np.linalg.norm(b.ravel())), floor)


def _describe(name: str, analytic: np.ndarray, numeric: np.ndarray) -> str:
    err = np.abs(analytic - numeric)
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    return (f"{name}: relative error {relative_error(analytic, numeric):.3e}; worst entry {worst}: "
            f"analytic {analytic[worst]!r}, numeric {numeric[worst]!r}")


def assert_gradients_close(analytic, numeric, rtol: float = 1e-6, atol: float = 0.0, name: str = "gradient"):
    """Assert ||analytic - numeric|| <= rtol * max(||analytic||, ||numeric||) + atol, per array.

    analytic and numeric are arrays, or dicts of arrays with the same keys (checked entry by entry, so
    a wrong small gradient is not hidden by a right large one). atol is for gradients that are zero up to
    rounding (e.g. weights behind dead ReLUs); keep it far below the gradients' typical size.
    """
    if isinstance(analytic, Mapping) or isinstance(numeric, Mapping):
        if not (isinstance(analytic, Mapping) and isinstance(numeric, Mapping)):
            raise TypeError("compare a dict with a dict")
        if list(analytic) != list(numeric):
            raise AssertionError(f"{name}: keys differ: {list(analytic)} vs {list(numeric)}")
        for key in analytic:
            assert_gradients_close(analytic[key], numeric[key], rtol, atol, f"{name}[{key!r}]")
        return
    analytic, numeric = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise AssertionError(f"{name}: shape {analytic.shape}, expected {numeric.shape}")
    if not np.all(np.isfinite(analytic)):
        raise AssertionError(f"{name}: analytic gradient has NaN or Inf")
    diff = float(np.linalg.norm((analytic - numeric).ravel()))
    scale = max(float(np.linalg.norm(analytic.ravel())), float(np.linalg.norm(numeric.ravel())))
    if not diff <= rtol * scale + atol:
        raise AssertionError(_describe(name, analytic, numeric))
