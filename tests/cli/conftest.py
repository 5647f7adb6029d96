"""Helpers for the CLI tests: tiny runs (few rounds, tiny networks) of the shared CLI."""

from pathlib import Path

import numpy as np
import pytest

from backends.cli import main
from backends.run import checkpoint

REPO = Path(__file__).resolve().parents[2]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"


def tiny_args(out, steps, *extra, hidden=4, batch=8):
    """`train` arguments for a run that takes well under a second with the reference backend."""
    return ["train", "--out", str(out), "--steps", str(steps), "--hidden", str(hidden), "--batch-size", str(batch),
            "--train-size", "300", "--no-progress", "--log-every", "1", *map(str, extra)]


def train(out, steps, *extra, backend="reference", **kw) -> int:
    return main(backend, tiny_args(out, steps, *extra, **kw))


def final_state(run) -> checkpoint.Checkpoint:
    return checkpoint.load(checkpoint.resolve(run))


def assert_same_state(a: checkpoint.Checkpoint, b: checkpoint.Checkpoint):
    """Bit-for-bit equality of two checkpoints' training states and random streams."""
    assert a.step == b.step
    for x, y in ((a.params, b.params), (a.d_opt_state, b.d_opt_state), (a.g_opt_state, b.g_opt_state)):
        assert list(x) == list(y)
        for name in x:
            np.testing.assert_array_equal(x[name], y[name], err_msg=name, strict=True)
    assert a.rng_state == b.rng_state


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in tmp_path, so that default run folders (runs/...) land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
