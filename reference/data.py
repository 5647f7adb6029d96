"""The toy datasets, generated from a seed (nothing is downloaded).

    gaussian1d  N(4, 1.25^2) in one dimension: the classic first GAN demo.
    ring        8 Gaussians, means (cos 2 pi k / 8, sin 2 pi k / 8), k = 0..7, standard deviation 0.01.
    grid        25 Gaussians, means {-4, -2, 0, 2, 4}^2, standard deviation 0.05.
    swissroll   a 2-D spiral: t ~ U(1.5 pi, 4.5 pi), x = (t cos t, t sin t) / 5 + N(0, 0.05^2 I).

ring and grid are the 2D-ring and 2D-grid of the PacGAN paper (Lin et al. 2018, Table 1), with the
same means and standard deviations, so the mode metrics in metrics.py compare with its figures.
A mixture picks each component with probability 1/K.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """A named distribution to sample from; mixtures also carry their modes and their common sigma."""

    name: str
    dim: int
    modes: np.ndarray | None = None  # (K, dim) component means, for mixtures
    sigma: float | None = None  # every component's standard deviation, for mixtures

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n samples, shape (n, dim), float64."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
            raise ValueError(f"number of samples must be a positive int, got {n!r}")
        if self.modes is not None:
            return self.sample_labelled(n, rng)[0]
        if self.name == "gaussian1d":
            return 4.0 + 1.25 * rng.standard_normal((n, 1))  # (n, 1)
        if self.name == "swissroll":
            t = rng.uniform(1.5 * np.pi, 4.5 * np.pi, size=n)  # (n,)
            spiral = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / 5.0  # (n, 2)
            return spiral + 0.05 * rng.standard_normal((n, 2))
        raise ValueError(f"no sampler for dataset {self.name!r}")


    def sample_labelled(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A mixture's samples (n, dim) and the index of the component each came from (n,): the class labels
        a conditional GAN learns from. The same draws as `sample`, so the samples are identical."""
        if self.modes is None:
            raise ValueError(f"{self.name} is not a mixture: it has no classes")
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
            raise ValueError(f"number of samples must be a positive int, got {n!r}")
        component = rng.integers(0, len(self.modes), size=n)  # (n,)
        return self.modes[component] + self.sigma * rng.standard_normal((n, self.dim)), component  # (n, dim), (n,)


def ring_modes(k: int = 8, radius: float = 1.0) -> np.ndarray:
    angles = 2 * np.pi * np.arange(k) / k  # (k,)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (k, 2)


def grid_modes(values=(-4.0, -2.0, 0.0, 2.0, 4.0)) -> np.ndarray:
    xs, ys = np.meshgrid(values, values, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)  # (25, 2)


DATASETS = {
    "gaussian1d": Dataset("gaussian1d", 1),
    "ring": Dataset("ring", 2, ring_modes(), 0.01),
    "grid": Dataset("grid", 2, grid_modes(), 0.05),
    "swissroll": Dataset("swissroll", 2),
}


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]
