"""Mode-coverage metrics for Gaussian mixtures, following the PacGAN protocol (Lin et al. 2018).

Each generated sample is assigned to its nearest mode. It is "high quality" when it lies within three
standard deviations of that mode. Then

    modes captured   the number of modes with at least one high-quality sample
    high quality     the share of all samples that are high quality
    reverse KL       sum_k p_k ln(K p_k), where p_k is the share of the high-quality samples that
                     belong to mode k (terms with p_k = 0 are 0): 0 for a perfectly even spread,
                     ln K when every high-quality sample sits on one mode.
"""

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ModeMetrics:
    modes_captured: int
    num_modes: int
    high_quality: float
    reverse_kl: float

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"modes captured {self.modes_captured}/{self.num_modes}, high-quality samples "
                f"{100 * self.high_quality:.1f}%, reverse KL {self.reverse_kl:.3f}")


def nearest_mode(samples: np.ndarray, modes: np.ndarray, sigma: float) -> np.ndarray:
    """(N,) the index of each sample's nearest mode when it lies within 3 sigma of it (a high-quality sample),
    else -1. samples (N, d), modes (K, d)."""
    distances = np.linalg.norm(samples[:, None, :] - modes[None, :, :], axis=2)  # (N, K)
    nearest = distances.argmin(axis=1)  # (N,)
    high_quality = distances[np.arange(len(samples)), nearest] <= 3 * sigma  # (N,)
    return np.where(high_quality, nearest, -1)


def mode_metrics(samples: np.ndarray, modes: np.ndarray, sigma: float) -> ModeMetrics:
    """samples (N, d), modes (K, d): the PacGAN mode metrics of the samples."""
    samples, modes = np.asarray(samples, dtype=np.float64), np.asarray(modes, dtype=np.float64)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if samples.ndim != 2 or samples.shape[1] != modes.shape[1] or len(samples) == 0:
        raise ValueError(f"samples must have shape (N > 0, {modes.shape[1]}), got {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise ValueError("samples contain NaN or Inf")
    mode = nearest_mode(samples, modes, sigma)  # (N,)
    high_quality = mode >= 0  # (N,)
    counts = np.bincount(mode[high_quality], minlength=len(modes))  # (K,) high-quality samples per mode
    k = len(modes)
    if counts.sum() == 0:
        reverse_kl = float("nan")  # no high-quality sample: the histogram is undefined
    else:
        p = counts / counts.sum()  # (K,)
        nonzero = p > 0
        reverse_kl = float(np.sum(p[nonzero] * np.log(k * p[nonzero])))
    return ModeMetrics(int((counts > 0).sum()), k, float(high_quality.mean()), reverse_kl)
