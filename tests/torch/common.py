"""Shared set-up for the torch backend's tests: small configs, reference/torch pairs, comparisons."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.interface import ReferenceBackend
from backends.torch import TorchBackend
from reference import gan, mlp, optim, train

LOSSES = ("minimax", "nonsaturating", "wasserstein")
OPTIMIZERS = {
    "adam": optim.OptimizerSpec("adam", lr=1e-2, beta1=0.5, beta2=0.999),
    "sgd": optim.OptimizerSpec("sgd", lr=5e-2),
    "sgd_momentum": optim.OptimizerSpec("sgd", lr=5e-2, momentum=0.9),
    "rmsprop": optim.OptimizerSpec("rmsprop", lr=1e-2, alpha=0.9),
    "rmsprop_momentum": optim.OptimizerSpec("rmsprop", lr=1e-2, alpha=0.9, momentum=0.5),
}


def make_config(loss="nonsaturating", opt="adam", *, z_size=3, data_size=2, hidden=(16, 8), batch_size=16,
                d_steps=2, g_steps=2, clip_value=None, hidden_activation="leaky_relu",
                g_output="tanh") -> train.TrainConfig:
    """A small GAN with two hidden layers; every activation kind the backend maps gets exercised across configs."""
    spec = gan.GANSpec(
        generator=mlp.MLPSpec(z_size, hidden, data_size, hidden_activation, g_output, leaky_slope=0.1),
        discriminator=mlp.MLPSpec(data_size, hidden, 1, hidden_activation, "identity", leaky_slope=0.1),
        loss=loss)
    opt_spec = OPTIMIZERS[opt] if isinstance(opt, str) else opt
    if clip_value is None and loss == "wasserstein":
        clip_value = 0.05
    return train.TrainConfig(spec, opt_spec, opt_spec, batch_size, d_steps, g_steps, clip_value)


def toy_data(config: train.TrainConfig, n: int = 256, seed: int = 0) -> np.ndarray:
    return np.random.default_rng([seed, 99]).standard_normal((n, config.spec.data_size))


def backends_pair(config, seed=0, dtype="float64", **torch_kwargs):
    """(ReferenceBackend float64, TorchBackend of `dtype` on the CPU), both initialised from `seed`."""
    ref = ReferenceBackend(config)
    tb = TorchBackend(config, dtype=dtype, device="cpu", **torch_kwargs)
    ref.init(seed)
    tb.init(seed)
    return ref, tb


def draw_chunk(config, n_data: int, rounds: int, seed: int):
    """(index, z_d, z_g) for `rounds` rounds, as the shared trainer hands them to train_rounds."""
    rng = np.random.default_rng([seed, 7])
    k, m, b, z = config.d_steps, config.g_steps, config.batch_size, config.spec.z_size
    return (rng.integers(0, n_data, size=(rounds, k, b)), rng.standard_normal((rounds, k, b, z)),
            rng.standard_normal((rounds, m, b, z)))


def rounds_inputs(data, index, z_d, z_g):
    """The StepInputs of each round of a chunk."""
    return [train.StepInputs(data[index[r]], z_d[r], z_g[r]) for r in range(len(index))]


def max_rel_diff(a: dict, b: dict) -> float:
    """max over entries of |a - b| / max(1, |a|): the figure the float64 tests hold to ~1e-10."""
    assert list(a) == list(b), (list(a), list(b))
    return max(float(np.max(np.abs(a[k] - b[k]) / np.maximum(1.0, np.abs(a[k])), initial=0.0)) for k in a)


def assert_dicts_close(a: dict, b: dict, tol: float, what: str = ""):
    assert list(a) == list(b), f"{what}: names differ: {list(a)} vs {list(b)}"
    for k in a:
        assert a[k].shape == b[k].shape, f"{what} {k}: shape {a[k].shape} vs {b[k].shape}"
        np.testing.assert_allclose(b[k], a[k], rtol=tol, atol=tol, err_msg=f"{what} {k}")


def assert_dicts_equal(a: dict, b: dict, what: str = ""):
    """Bitwise equality of two dicts of arrays (same names, same order, same bits)."""
    assert list(a) == list(b), f"{what}: names differ"
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, f"{what} {k}"
        assert a[k].tobytes() == b[k].tobytes(), f"{what} {k} differs"


def metrics_close(m1: train.StepMetrics, m2: train.StepMetrics, tol: float):
    d1, d2 = m1.to_dict(), m2.to_dict()
    assert d1["step"] == d2["step"]
    for key in d1:
        if key == "step":
            continue
        if np.isnan(d1[key]):
            assert np.isnan(d2[key]), key
        else:
            np.testing.assert_allclose(d2[key], d1[key], rtol=tol, atol=tol, err_msg=key)


# ----- DDP under torchrun (gloo, 2 processes) -----

ROOT = Path(__file__).resolve().parents[2]


def torchrun(args: list[str], out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m torch.distributed.run --nproc_per_node=2 ARGS` in `out`, clean of any outer DDP env."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    result = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"torchrun failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def save_rank_results(out: Path, names, make_config_for, run) -> None:
    """The worker side: for each case name, run it on a DDP TorchBackend and save params and metrics per rank."""
    backend = None
    for name in names:
        config = make_config_for(name)
        backend = TorchBackend(config, device="cpu")
        assert backend.world_size == 2, backend.world_size
        metrics = run(backend, config)
        np.savez(out / f"{name}.rank{backend.rank}.npz", **backend.export_params())
        (out / f"{name}.rank{backend.rank}.json").write_text(json.dumps(metrics))
    backend.close()


def assert_ranks_match(results: Path, name: str, expected: dict, expected_metrics: list[dict]) -> None:
    """Both ranks' parameters are bitwise equal and equal `expected` (one process) to 1e-10; so are the metrics."""
    ranks = [np.load(results / f"{name}.rank{r}.npz") for r in (0, 1)]
    for key, value in expected.items():
        assert ranks[0][key].tobytes() == ranks[1][key].tobytes(), f"{name} {key}: ranks disagree"
        np.testing.assert_allclose(ranks[0][key], value, rtol=1e-10, atol=1e-10, err_msg=f"{name} {key}")
    for r in (0, 1):
        metrics = json.loads((results / f"{name}.rank{r}.json").read_text())
        assert len(metrics) == len(expected_metrics)
        for got, want in zip(metrics, expected_metrics, strict=True):
            for key, value in want.items():
                if isinstance(value, float) and np.isnan(value):
                    assert got[key] is None or np.isnan(got[key]), key
                else:
                    assert got[key] == pytest.approx(value, rel=1e-10, abs=1e-10), (name, key)
