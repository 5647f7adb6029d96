"""Every experiment runs as a script (--quick), prints its figures and writes its PNG where it is told."""

import subprocess
import sys

import pytest

from experiments.common import REPO_ROOT

CHEAP = ["optimal_discriminator", "convergence", "wasserstein_critic", "failure_to_converge", "conditional"]
HEAVIER = ["saturation", "vanishing_gradients", "mode_collapse"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", CHEAP + [pytest.param(n, marks=pytest.mark.slow) for n in HEAVIER])
def test_script_writes_its_figure(name, tmp_path):
    result = subprocess.run([sys.executable, "-m", f"experiments.{name}", "--quick", "--out-dir", str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    png = tmp_path / f"{name}.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert f"wrote {png}" in result.stdout
    assert len(result.stdout.splitlines()) >= 3


def test_script_runs_by_path(tmp_path):
    """`python experiments/<name>.py` works as well as `python -m experiments.<name>`."""
    script = REPO_ROOT / "experiments" / "wasserstein_critic.py"
    result = subprocess.run([sys.executable, str(script), "--quick", "--out-dir", str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "wasserstein_critic.png").exists()


def test_bad_argument_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "experiments.convergence", "--seed", "x"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--seed" in result.stderr and "invalid int" in result.stderr
