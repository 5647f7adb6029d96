"""DistributedDataParallel on the CPU (gloo): 2 processes under torchrun match 1 process on the global batch."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from backends.torch import TorchBackend

from .common import ROOT, make_config, torchrun
from .ddp_worker import CASES, run_case


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torchrun([str(ROOT / "tests" / "torch" / "ddp_worker.py"), str(out)], out)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_match_one_on_the_global_batch(ddp_results, case):
    config = make_config(**CASES[case])
    single = TorchBackend(config, device="cpu")
    assert single.world_size == 1 and single.rank == 0
    expected_metrics = run_case(single, config)
    expected = single.export_params()
    ranks = [load_file(str(ddp_results / f"{case}.rank{r}.safetensors")) for r in (0, 1)]
    for name, value in expected.items():
        # the ranks hold identical replicas (DDP averaged the same gradients on both)
        assert ranks[0][name].tobytes() == ranks[1][name].tobytes(), f"{case} {name}: ranks disagree"
        np.testing.assert_allclose(ranks[0][name], value, rtol=1e-10, atol=1e-10, err_msg=f"{case} {name}")
    for r in (0, 1):
        metrics = json.loads((ddp_results / f"{case}.rank{r}.json").read_text())
        assert [m["step"] for m in metrics] == [m["step"] for m in expected_metrics]
        for got, want in zip(metrics, expected_metrics, strict=True):
            for key, value in want.items():
                if value is None or (isinstance(value, float) and np.isnan(value)):
                    assert got[key] is None or np.isnan(got[key]), key
                else:  # losses, accuracies and the critic gap are global means, not this rank's shard's
                    assert got[key] == pytest.approx(value, rel=1e-10, abs=1e-10), (case, key)


def test_global_batch_must_split_evenly(ddp_results):
    for r in (0, 1):
        message = (ddp_results / f"error.rank{r}.txt").read_text()
        assert "global batch of 15 rows does not split evenly over 2 processes" in message
