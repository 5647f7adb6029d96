"""The reference does not just run, it trains: its default recipe covers the ring (issue 2's acceptance bar)."""

import numpy as np
import pytest

from reference import data, metrics
from reference.__main__ import main


@pytest.mark.slow
def test_default_nonsaturating_run_covers_the_ring(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--log-every", "1000"]) == 0
    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape == (2500, 2)
    ring = data.get_dataset("ring")
    result = metrics.mode_metrics(samples, ring.modes, ring.sigma)
    assert result.modes_captured >= 7, result
    assert result.high_quality >= 0.5, result
    assert "mode metrics: modes captured" in capsys.readouterr().out


def test_cli_refuses_to_overwrite_samples(tmp_path, capsys):
    (tmp_path / "samples.npy").write_bytes(b"precious")
    assert main(["train", "--steps", "2", "--out", str(tmp_path)]) == 2
    assert (tmp_path / "samples.npy").read_bytes() == b"precious"
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wasserstein"])
@pytest.mark.parametrize("dataset", ["gaussian1d", "ring", "grid", "swissroll"])
def test_cli_tiny_runs_write_samples(tmp_path, loss, dataset):
    assert main(["train", "--loss", loss, "--dataset", dataset, "--steps", "3", "--out", str(tmp_path)]) == 0
    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape == (2500, data.get_dataset(dataset).dim)
    assert np.all(np.isfinite(samples))


@pytest.mark.parametrize("argv, message", [
    (["train", "--loss", "hinge"], "invalid choice: 'hinge'"),
    (["train", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["train", "--steps", "0"], "--steps must be positive"),
])
def test_cli_rejects_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
