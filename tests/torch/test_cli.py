"""`python -m backends.torch` (the shared CLI on the torch backend), in one process and under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.run import checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "ring", "--steps", "12", "--hidden", "8", "8", "--batch-size", "16", "--log-every", "4",
        "--no-progress", "--device", "cpu"]


def _run(prefix: list[str], args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return subprocess.run([sys.executable, *prefix, "-m", "backends.torch", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    where = tmp_path_factory.mktemp("cli")
    result = _run([], ["train", *TINY, "--out", str(where / "one")], where)
    assert result.returncode == 0, result.stderr
    return where / "one"


def test_train_writes_a_run_folder(single_run):
    assert (single_run / "summary.json").exists() and (single_run / "config.json").exists()
    config = json.loads((single_run / "config.json").read_text())
    assert config["backend"]["name"] == "torch" and config["backend"]["device"] == "cpu"
    steps = [m["step"] for m in _metrics(single_run)]
    assert steps[-1] == 12
    ck = checkpoint.load(checkpoint.find_latest(checkpoint.checkpoint_folder(single_run)))
    assert ck.step == 12


def test_cli_reports_bad_backend_options(tmp_path):
    result = _run([], ["train", *TINY, "--dtype", "float32", "--amp", "--out", str(tmp_path / "x")], tmp_path)
    assert result.returncode == 1 and "CUDA only" in result.stderr
    result = _run([], ["train", *TINY[:-1], "gpu", "--out", str(tmp_path / "y")], tmp_path)
    assert result.returncode == 1 and "unknown device 'gpu'" in result.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(single_run, tmp_path):
    """The same training, data-parallel over 2 CPU processes: one run folder, the same metrics and parameters."""
    prefix = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = _run(prefix, ["train", *TINY, "--out", str(tmp_path / "two")], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.count("writing ") == 1, "only rank 0 writes the run folder"
    one, two = _metrics(single_run), _metrics(tmp_path / "two")
    assert [m["step"] for m in one] == [m["step"] for m in two]
    for a, b in zip(one, two, strict=True):
        for key, value in a.items():
            if value is None:
                assert b[key] is None
            else:
                assert b[key] == pytest.approx(value, rel=1e-10, abs=1e-10), key
    ck1 = checkpoint.load(checkpoint.find_latest(checkpoint.checkpoint_folder(single_run)))
    ck2 = checkpoint.load(checkpoint.find_latest(checkpoint.checkpoint_folder(tmp_path / "two")))
    for name, value in ck1.params.items():
        np.testing.assert_allclose(ck2.params[name], value, rtol=1e-10, atol=1e-10, err_msg=name)
