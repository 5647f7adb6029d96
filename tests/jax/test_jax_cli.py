"""The JAX backend behind the shared CLI: runs equal the reference's, checkpoints are read by torch, and the
default ring run covers the modes."""

import json

import numpy as np
import pytest
import safetensors.numpy

from backends.cli import main

TINY = ["--dataset", "ring", "--hidden", "16", "16", "--batch-size", "16", "--steps", "40", "--log-every", "10",
        "--sample-every", "40", "--checkpoint-every", "20", "--train-size", "500", "--seed", "3", "--no-progress"]


def tensors(run, step):
    return safetensors.numpy.load_file(str(run / "checkpoints" / f"step_{step:06d}.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny run trained by the reference, by JAX, and by JAX in two parts (--resume)."""
    base = tmp_path_factory.mktemp("jax-cli")
    assert main("reference", ["train", *TINY, "--out", str(base / "ref")]) == 0
    assert main("jax", ["train", *TINY, "--out", str(base / "jax")]) == 0
    halves = [a if a != "40" or TINY[i - 1] != "--steps" else "20" for i, a in enumerate(TINY)]
    assert main("jax", ["train", *halves, "--out", str(base / "two")]) == 0
    assert main("jax", ["train", "--resume", str(base / "two"), "--steps", "40", "--no-progress"]) == 0
    return base


def test_cli_run_equals_the_reference_run(runs):
    ref, jx = tensors(runs / "ref", 40), tensors(runs / "jax", 40)
    assert set(ref) == set(jx)
    for name in ref:
        scale = max(1.0, float(np.abs(ref[name]).max()))
        assert np.abs(jx[name] - ref[name]).max() <= 1e-10 * scale, name
    assert json.loads((runs / "jax" / "config.json").read_text())["backend"]["name"] == "jax"


def test_resumed_run_equals_the_uninterrupted_one(runs):
    whole, resumed = tensors(runs / "jax", 40), tensors(runs / "two", 40)
    for name in whole:
        assert np.abs(whole[name] - resumed[name]).max() <= 1e-12 * max(1.0, float(np.abs(whole[name]).max()))


def test_torch_samples_a_jax_checkpoint(runs, tmp_path):
    pytest.importorskip("torch")
    out = {}
    for backend in ("jax", "torch"):
        out[backend] = tmp_path / f"{backend}.npy"
        assert main(backend, ["sample", "--checkpoint", str(runs / "jax"), "-n", "64", "--seed", "5",
                              "--out", str(out[backend])]) == 0
    a, b = np.load(out["jax"]), np.load(out["torch"])
    assert a.shape == b.shape == (64, 2)
    assert np.abs(a - b).max() <= 1e-12 * max(1.0, float(np.abs(b).max()))
    assert np.abs(a).max() > 0.1  # real samples, not zeros


@pytest.mark.slow
def test_default_ring_run_covers_the_modes(tmp_path, capsys):
    """`python -m backends.jax train` with every default (ring, non-saturating, 5000 rounds) gets >= 7/8 modes."""
    assert main("jax", ["train", "--out", str(tmp_path / "ring"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "ring" / "summary.json").read_text())
    print(summary["eval"], summary["rounds_per_second"])
    assert summary["steps"] == 5000
    assert summary["eval"]["mode_metrics"]["modes_captured"] >= 7, summary["eval"]
