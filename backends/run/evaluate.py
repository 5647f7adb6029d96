"""Sample-quality figures for `eval` and summary.json.

For every dataset, n generated samples (z from np.random.default_rng([seed, 5])) are compared with n
training samples (rows drawn without replacement, or with replacement when n exceeds the training set,
from np.random.default_rng([seed, 6])):

    mean_error          || mean(generated) - mean(real) ||_2 over the data dimensions
    std_error           || std(generated) - std(real) ||_2, per-dimension standard deviations
    sliced_wasserstein  the 1-Wasserstein distance between the two samples projected on a direction,
                        averaged over 64 random unit directions (the same directions for a given seed)

and, per dataset:

    gaussian1d   wasserstein1: the exact 1-D Wasserstein distance between the two samples; mean, std
    ring, grid   the PacGAN mode metrics (reference.metrics.mode_metrics) of the generated samples
    digits, mnist  nothing more (the figures above on pixel vectors)

The 1-Wasserstein distance of two samples of equal size n is mean |sort(a) - sort(b)|.
"""

from __future__ import annotations

import numpy as np

from reference import metrics

from .datasets import DataInfo

Z_STREAM, REAL_STREAM = 5, 6
EVAL_SAMPLES = 2500
PROJECTIONS = 64


def cycled_labels(n: int, num_classes: int) -> np.ndarray:
    """0, 1, ..., K-1, 0, 1, ...: every class equally often (the labels a conditional G is asked for)."""
    return np.arange(n, dtype=np.int64) % num_classes


def generate(backend, z: np.ndarray, batch: int = 8192, labels: np.ndarray | None = None) -> np.ndarray:
    """G(z) in batches, as float64. A conditional G generates for `labels` (default: `cycled_labels`)."""
    k = backend.config.spec.num_classes
    if k and labels is None:
        labels = cycled_labels(len(z), k)
    out = []
    for i in range(0, len(z), batch):
        kw = {"labels": labels[i:i + batch]} if k else {}
        out.append(np.asarray(backend.generate(z[i:i + batch], **kw), dtype=np.float64))
    return np.concatenate(out, axis=0)


def wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """W1 between two 1-D samples of the same size."""
    if a.shape != b.shape:
        raise ValueError(f"samples must have the same size, got {a.shape} and {b.shape}")
    return float(np.mean(np.abs(np.sort(a) - np.sort(b))))


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n_dirs: int = PROJECTIONS) -> float:
    dirs = rng.standard_normal((a.shape[1], n_dirs))  # (dim, n_dirs)
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = a @ dirs, b @ dirs  # (n, n_dirs)
    return float(np.mean(np.abs(np.sort(pa, axis=0) - np.sort(pb, axis=0))))


def compare(samples: np.ndarray, data: np.ndarray, info: DataInfo, seed: int, labels=None) -> dict:
    """The figures above for generated `samples` (n, dim) against the training set `data`. For a conditional
    GAN on a mixture, `labels` (n,) are the requested classes, and `on_requested_mode` is the share of
    samples within 3 sigma of their requested mode."""
    n = len(samples)
    if not np.all(np.isfinite(samples)):
        return {"n": n, "finite": False}
    rng = np.random.default_rng([seed, REAL_STREAM])
    real = data[rng.choice(len(data), size=n, replace=n > len(data))]
    out = {"n": n, "finite": True,
           "mean_error": float(np.linalg.norm(samples.mean(0) - real.mean(0))),
           "std_error": float(np.linalg.norm(samples.std(0) - real.std(0))),
           "sliced_wasserstein": sliced_wasserstein(samples, real, rng)}
    if info.name == "gaussian1d":
        out.update(wasserstein1=wasserstein1(samples[:, 0], real[:, 0]), mean=float(samples.mean()),
                   std=float(samples.std()), data_mean=float(real.mean()), data_std=float(real.std()))
    toy = info.toy
    if toy is not None and toy.modes is not None:
        out["mode_metrics"] = metrics.mode_metrics(samples, toy.modes, toy.sigma).to_dict()
        if labels is not None:
            out["on_requested_mode"] = float(np.mean(metrics.nearest_mode(samples, toy.modes, toy.sigma) == labels))
    return out


def evaluate(backend, data: np.ndarray, info: DataInfo, seed: int, n: int = EVAL_SAMPLES) -> dict:
    z = np.random.default_rng([seed, Z_STREAM]).standard_normal((n, backend.config.spec.z_size))
    k = backend.config.spec.num_classes
    labels = cycled_labels(n, k) if k else None
    return compare(generate(backend, z, labels=labels), data, info, seed, labels)


def describe(result: dict) -> str:
    """Human-readable lines for a compare() result."""
    if not result.get("finite", True):
        return f"the {result['n']} generated samples contain NaN or Inf"
    lines = []
    if "mode_metrics" in result:
        m = metrics.ModeMetrics(**result["mode_metrics"])
        lines.append(str(m))
    if "on_requested_mode" in result:
        lines.append(f"conditional: {100 * result['on_requested_mode']:.1f}% of the samples on the requested mode "
                     f"(classes 0, 1, ... asked for in turn)")
    if "wasserstein1" in result:
        lines.append(f"1-D Wasserstein distance {result['wasserstein1']:.4f}; mean {result['mean']:.3f} "
                     f"(data {result['data_mean']:.3f}), std {result['std']:.3f} (data {result['data_std']:.3f})")
    lines.append(f"sliced Wasserstein {result['sliced_wasserstein']:.4f}, mean error {result['mean_error']:.4f}, "
                 f"std error {result['std_error']:.4f} ({result['n']} samples)")
    return "\n".join(lines)
