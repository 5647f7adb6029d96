"""`python -m backends.torch` end to end, in process: every dataset x every loss at tiny sizes, and the default
main job reaching the ring's modes (issue 3's acceptance bar)."""

import json
from pathlib import Path

import numpy as np
import pytest

from backends.cli import main

REPO = Path(__file__).resolve().parents[2]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
DATA_SIZE = {"gaussian1d": 1, "ring": 2, "grid": 2, "swissroll": 2, "digits": 64, "mnist": 784}


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wasserstein"])
@pytest.mark.parametrize("dataset", list(DATA_SIZE))
def test_every_dataset_and_loss_trains_samples_and_evaluates(tmp_path, dataset, loss):
    extra = []
    if dataset == "mnist":
        if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
            pytest.skip(f"no MNIST files in {MNIST_DIR}")
        extra = ["--data-dir", str(MNIST_DIR)]
    run = tmp_path / "run"
    argv = ["train", "--dataset", dataset, "--loss", loss, "--steps", "4", "--hidden", "8", "--z-size", "3",
            "--batch-size", "8", "--train-size", "200", "--log-every", "1", "--sample-every", "2",
            "--checkpoint-every", "2", "--no-progress", "--device", "cpu", "--dtype", "float32", "--out", str(run),
            *extra]
    assert main("torch", argv) == 0
    assert json.loads((run / "config.json").read_text())["train_config"]["spec"]["loss"] == loss
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in records)
    assert (run / "summary.json").exists() and (run / "losses.png").stat().st_size > 0
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["step_000002.png", "step_000004.png"]
    samples_file = tmp_path / "samples.npy"
    assert main("torch", ["sample", "--checkpoint", str(run), "-n", "5", "--out", str(samples_file)]) == 0
    samples = np.load(samples_file)
    assert samples.shape == (5, DATA_SIZE[dataset]) and np.all(np.isfinite(samples))
    if dataset in ("digits", "mnist"):  # images: G ends in tanh
        assert np.all(np.abs(samples) <= 1)
    assert main("torch", ["eval", "--checkpoint", str(run)]) == 0


@pytest.mark.slow
def test_default_main_job_reaches_seven_of_eight_ring_modes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main("torch", ["train", "--no-progress"]) == 0  # no options: the main job, as users run it
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 5000 and summary["backend"]["name"] == "torch"
    modes = summary["eval"]["mode_metrics"]
    assert modes["modes_captured"] >= 7, modes
    assert modes["high_quality"] >= 0.5, modes
