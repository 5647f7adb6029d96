"""What the experiments share: argument parsing, single-threaded BLAS, figures, and small helpers."""

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np

from reference import gan, mlp, optim
from reference.activations import sigmoid  # noqa: F401  (re-exported for the experiments)

REPO_ROOT = Path(__file__).resolve().parents[1]
FIGURES = REPO_ROOT / "docs" / "course" / "figures"


def parser(description: str) -> argparse.ArgumentParser:
    """The options every experiment takes: --seed, --out-dir and --quick (a smaller run, for a smoke test)."""
    p = argparse.ArgumentParser(description=description.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="seed of every random stream (default %(default)s)")
    p.add_argument("--out-dir", type=Path, default=FIGURES, help="where the PNG goes (default docs/course/figures)")
    p.add_argument("--quick", action="store_true", help="a much smaller run (seconds), to check the script works")
    return p


@contextlib.contextmanager
def single_thread():
    """Run NumPy's BLAS on one thread: the reference's matrices are tiny, and on a shared machine a
    multi-threaded BLAS is many times slower than one thread. Uses threadpoolctl when it is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def save_figure(fig, out_dir: Path, name: str) -> Path:
    """Write fig as out_dir/name (PNG, 100 dpi) and close it. Creates out_dir if needed."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def linear_generator_spec(size: int, discriminator_hidden=(32, 32), loss="nonsaturating") -> gan.GANSpec:
    """A GAN whose G is one linear layer z -> z @ W + b (size -> size) and whose D is a ReLU MLP.

    With W and b set by hand, G is a known distribution: N(b, W^2) for Gaussian z in 1-D, or the identity map
    (W = I, b = 0) that passes samples given as z straight through.
    """
    generator = mlp.MLPSpec(size, (), size, "relu", "identity")
    discriminator = mlp.MLPSpec(size, tuple(discriminator_hidden), 1, "relu", "identity")
    return gan.GANSpec(generator, discriminator, loss)


def train_d_alone(spec, params, opt_spec, steps, real_sampler, z_sampler, clip_value=None, on_step=None):
    """Train only D for `steps` updates (G frozen throughout) with gan.d_update. Returns (params, stats list).

    real_sampler() and z_sampler() give one batch each; on_step(i, params, stats) is called after update i.
    """
    state = optim.init_state(opt_spec, gan.network(params, "D"))
    history = []
    for i in range(steps):
        params, state, stats = gan.d_update(spec, opt_spec, params, state, real_sampler(), z_sampler(), clip_value)
        history.append(stats)
        if on_step is not None:
            on_step(i, params, stats)
    return params, history


def accuracy(real_logits, fake_logits) -> float:
    """Share of all samples D classifies correctly: real with logit > 0, fake with logit < 0."""
    correct = np.sum(real_logits > 0) + np.sum(fake_logits < 0)
    return float(correct / (real_logits.size + fake_logits.size))


def report(lines):
    """Print the experiment's figures, one per line, and flush (they may be piped into a file)."""
    for line in lines:
        print(line)
    sys.stdout.flush()
