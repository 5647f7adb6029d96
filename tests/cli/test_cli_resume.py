"""Resuming bit for bit, signals, kill -9, divergence."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import backends.cli
from backends.cli import main
from backends.interface import ReferenceBackend
from backends.run import checkpoint, metrics_log

from .conftest import REPO, assert_same_state, final_state, tiny_args, train


def sample_bytes(run, tmp_path, name):
    out = tmp_path / f"{name}.npy"
    assert main("reference", ["sample", "--checkpoint", str(run), "-n", "64", "--out", str(out), "--seed", "1"]) == 0
    return out.read_bytes()


@pytest.mark.parametrize("loss", ["nonsaturating", "wasserstein"])
def test_n_then_resume_to_2n_equals_2n(tmp_path, loss):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train(whole, 12, "--loss", loss, "--checkpoint-every", "5") == 0
    assert train(split, 6, "--loss", loss, "--checkpoint-every", "4") == 0
    assert main("reference", ["train", "--resume", str(split), "--steps", "12", "--no-progress"]) == 0
    assert_same_state(final_state(whole), final_state(split))
    assert sample_bytes(whole, tmp_path, "a") == sample_bytes(split, tmp_path, "b")
    assert (whole / "metrics.jsonl").read_text() == (split / "metrics.jsonl").read_text()
    history = json.loads((split / "config.json").read_text())["history"]
    assert [(h["from_step"], h["to_step"]) for h in history] == [(0, 6), (6, 12)]


def test_resume_rules(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, 4) == 0
    assert main("reference", ["train", "--resume", str(run), "--steps", "4"]) == 0
    assert "nothing to train" in capsys.readouterr().err
    assert main("reference", ["train", "--resume", str(run), "--steps", "3"]) == 1
    assert "already has 4 rounds" in capsys.readouterr().err
    assert main("reference", ["train", "--resume", str(run), "--steps", "6", "--loss", "minimax"]) == 1
    assert "--loss cannot change when resuming" in capsys.readouterr().err
    assert main("reference", ["train", "--resume", str(run), "--steps", "6", "--hidden", "5"]) == 1
    assert main("reference", ["train", "--resume", str(tmp_path / "nope"), "--steps", "6"]) == 1
    assert "config.json not found" in capsys.readouterr().err
    assert final_state(run).step == 4
    # run-control options may change, and the same value of a fixed option is accepted
    assert main("reference", ["train", "--resume", str(run), "--steps", "6", "--hidden", "4", "--log-every", "2",
                              "--no-progress"]) == 0
    assert final_state(run).step == 6


def _spawn(args):
    code = "import sys; from backends.cli import main; sys.exit(main('reference', sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_rounds(proc, metrics, n, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("training did not start in time")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_and_the_run_resumes_bit_for_bit(tmp_path, signum):
    run = tmp_path / "run"
    proc = _spawn(tiny_args(run, 100000, "--checkpoint-every", "100000"))
    _wait_for_rounds(proc, run / "metrics.jsonl", 5)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and f"stopped by signal {int(signum)}" in err
    stopped = final_state(run)
    assert stopped.step >= 5
    total = stopped.step + 7
    assert main("reference", ["train", "--resume", str(run), "--steps", str(total), "--no-progress"]) == 0
    whole = tmp_path / "whole"
    assert train(whole, total) == 0
    assert_same_state(final_state(whole), final_state(run))
    assert (whole / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()


def test_kill_9_never_leaves_a_corrupt_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = _spawn(tiny_args(run, 100000, "--checkpoint-every", "1"))
    _wait_for_rounds(proc, run / "metrics.jsonl", 30)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    found = checkpoint.list_checkpoints(run / "checkpoints")
    assert len(found) >= 20
    for _, path in found[-5:]:
        checkpoint.load(path)  # every file with a final name is complete
    # a writer killed mid-write leaves at worst a temporary file: plant one, with a higher step
    folder = run / "checkpoints"
    stray = folder / ".tmp-step_999999.safetensors.abc123"
    stray.write_bytes(found[-1][1].read_bytes()[:100])
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 99999, "d_loss": 0.')  # a torn last line
    last = found[-1][0]
    assert main("reference", ["train", "--resume", str(run), "--steps", str(last + 5), "--no-progress"]) == 0
    assert not stray.exists()
    whole = tmp_path / "whole"
    assert train(whole, last + 5) == 0
    assert_same_state(final_state(whole), final_state(run))
    assert (whole / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_real_divergence_stops_with_a_clear_error_and_a_loadable_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    rc = train(run, 200, "--d-optimizer", "sgd", "--d-lr", "1e10", "--g-optimizer", "sgd", "--g-lr", "1e10",
               "--checkpoint-every", "1")
    assert rc == 3
    err = capsys.readouterr().err
    assert "training diverged at round" in err
    ck = final_state(run)  # the newest checkpoint is a good one
    for group in (ck.params, ck.d_opt_state, ck.g_opt_state):
        assert all(np.all(np.isfinite(v)) for v in group.values())
    assert ck.step < 200
    assert not (run / "summary.json").exists()


class NaNAtRound7(ReferenceBackend):
    """The reference, except that round 7 reports a NaN D loss (as a diverging backend would)."""

    def train_step(self, inputs):
        metrics = super().train_step(inputs)
        if metrics.step == 7:
            metrics.d_loss = float("nan")
        return metrics


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(backends.cli, "load_backend", lambda name: NaNAtRound7)
    run = tmp_path / "run"
    assert train(run, 20, "--checkpoint-every", "5") == 3
    err = capsys.readouterr().err
    assert "training diverged at round 7: D loss nan" in err
    assert "step_000005.safetensors" in err
    assert [s for s, _ in checkpoint.list_checkpoints(run / "checkpoints")] == [5]
    records = metrics_log.read(run / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 8)) and np.isnan(records[-1]["d_loss"])
    assert 'NaN' not in (run / "metrics.jsonl").read_text()  # strict JSON: null
    # the run resumes from round 5 with a healthy backend
    monkeypatch.undo()
    assert main("reference", ["train", "--resume", str(run), "--steps", "10", "--no-progress"]) == 0
    assert [r["step"] for r in metrics_log.read(run / "metrics.jsonl")] == list(range(1, 11))
