"""Pictures of a run: generated samples and training curves.

matplotlib's object-oriented API (matplotlib.figure.Figure, rendered by Agg) is used, never pyplot, so
nothing here opens a window or changes the process-wide matplotlib backend.

    1-D data     histograms of real and generated samples on shared bins
    2-D data     the real density as a 2-D histogram (log-scaled grey background), generated points on top
    images       a square grid of generated images, pixel values [-1, 1] shown black to white
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from .files import atomic_write_bytes


def _save(fig: Figure, path: str | Path, dpi: int = 100) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def image_grid(samples: np.ndarray, shape: tuple[int, int], pad: int = 1) -> np.ndarray:
    """Tile (n, h*w) images in [-1, 1] into one (rows*(h+pad)-pad, cols*(w+pad)-pad) array in [0, 1]."""
    n = len(samples)
    h, w = shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad))
    images = (np.clip(samples, -1, 1).reshape(n, h, w) + 1) / 2
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = img
    return grid


def plot_samples(path: str | Path, samples: np.ndarray, *, real: np.ndarray | None = None,
                 image_shape: tuple[int, int] | None = None, title: str = "") -> None:
    """Write a PNG of generated samples (n, dim), over the real data when given (1-D and 2-D)."""
    samples = np.asarray(samples, dtype=np.float64)
    fig = Figure(figsize=(6, 6) if samples.shape[1] != 1 else (7, 4))
    ax = fig.add_subplot()
    finite = samples[np.all(np.isfinite(samples), axis=1)]
    if image_shape is not None:
        ax.imshow(image_grid(samples, image_shape), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
    elif samples.shape[1] == 1:
        pool = finite[:, 0] if real is None else np.concatenate([finite[:, 0], real[:, 0]])
        lo, hi = np.percentile(pool, [0.5, 99.5]) if len(pool) else (-1.0, 1.0)
        bins = np.linspace(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9), 80)
        if real is not None:
            ax.hist(real[:, 0], bins=bins, density=True, color="0.7", label="real")
        ax.hist(finite[:, 0], bins=bins, density=True, histtype="step", color="C3", linewidth=2, label="generated")
        ax.set_xlabel("x")
        ax.set_ylabel("density")
        ax.legend()
    else:
        if real is not None:
            xs, ys = real[:, 0], real[:, 1]
            span_x, span_y = np.ptp(xs) or 1.0, np.ptp(ys) or 1.0
            ext = [[xs.min() - 0.25 * span_x, xs.max() + 0.25 * span_x],
                   [ys.min() - 0.25 * span_y, ys.max() + 0.25 * span_y]]
            ax.hist2d(xs, ys, bins=200, range=ext, cmap="Greys", norm=LogNorm(), rasterized=True)
            ax.set_xlim(ext[0])
            ax.set_ylim(ext[1])
            ax.scatter([], [], s=12, c="0.3", marker="s", label="real (density)")  # legend entry for hist2d
        ax.scatter(finite[:, 0], finite[:, 1], s=4, c="C3", alpha=0.6, label="generated")
        ax.set_aspect("equal")
        ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    _save(fig, path)


def plot_losses(path: str | Path, records: list[dict], loss_kind: str) -> None:
    """losses.png: D and G losses, and D's accuracy on real/fake (or the critic gap for WGAN), per logged round."""
    fig = Figure(figsize=(8, 6))
    ax_loss, ax_acc = fig.subplots(2, 1, sharex=True)
    steps = [r["step"] for r in records]
    ax_loss.plot(steps, [r["d_loss"] for r in records], label="D loss" if loss_kind != "wasserstein" else "critic loss")
    ax_loss.plot(steps, [r["g_loss"] for r in records], label="G loss")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    if loss_kind == "wasserstein":
        ax_acc.plot(steps, [r["critic_gap"] for r in records], color="C2", label="critic gap E C(x) - E C(G(z))")
        ax_acc.set_ylabel("critic gap")
    else:
        ax_acc.plot(steps, [r["d_acc_real"] for r in records], color="C2", label="D accuracy, real")
        ax_acc.plot(steps, [r["d_acc_fake"] for r in records], color="C3", label="D accuracy, fake")
        ax_acc.set_ylim(-0.05, 1.05)
        ax_acc.set_ylabel("accuracy")
    ax_acc.set_xlabel("round")
    ax_acc.legend()
    fig.suptitle(f"{loss_kind} GAN")
    _save(fig, path)
