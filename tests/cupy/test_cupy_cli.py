"""The shared CLI on the CuPy backend: the default recipe (non-saturating GAN on ring) finds the modes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_default_train_reaches_seven_of_eight_ring_modes(tmp_path):
    """`python -m backends.cupy train` with every default: 5000 rounds of NS GAN on ring, on the CPU path.
    Recorded here (2-core CPU, float64): 8/8 modes, 81% high-quality samples, reverse KL 0.34."""
    pytest.importorskip("backends.cli")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # tiny GEMMs: threads only hurt
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "backends.cupy", "train", "--out", str(out), "--no-progress",
                             "--device", "cpu"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"]["name"] == "cupy" and summary["steps"] == 5000
    modes = summary["eval"]["mode_metrics"]
    assert modes["num_modes"] == 8 and modes["modes_captured"] >= 7, modes
    assert modes["high_quality"] > 0.5, modes
