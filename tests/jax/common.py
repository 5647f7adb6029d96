"""Builders and comparisons shared by the JAX backend's tests."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import safetensors.numpy

from backends.cli import main
from backends.interface import ReferenceBackend
from backends.jax import JaxBackend
from reference import gan, mlp, optim, train

ADAM = optim.OptimizerSpec("adam", lr=1e-2, beta1=0.5, beta2=0.999)
SGD = optim.OptimizerSpec("sgd", lr=0.05)
SGD_MOMENTUM = optim.OptimizerSpec("sgd", lr=0.05, momentum=0.9)
RMSPROP = optim.OptimizerSpec("rmsprop", lr=5e-3, alpha=0.9)
RMSPROP_MOMENTUM = optim.OptimizerSpec("rmsprop", lr=5e-3, alpha=0.95, momentum=0.5)


def make_config(loss="nonsaturating", d_opt=ADAM, g_opt=ADAM, *, hidden=(7, 5), activation="relu",
                g_output="identity", z_size=3, data_size=2, batch=6, d_steps=1, g_steps=1, clip=None,
                slope=0.2) -> train.TrainConfig:
    spec = gan.GANSpec(mlp.MLPSpec(z_size, hidden, data_size, activation, g_output, slope),
                       mlp.MLPSpec(data_size, hidden, 1, activation, "identity", slope), loss)
    return train.TrainConfig(spec, d_opt, g_opt, batch, d_steps, g_steps, clip)


def pair(config, seed=0, dtype="float64", ref_dtype="float64", device=None):
    """A reference backend and a JAX backend, both initialised from `seed`."""
    ref, jx = ReferenceBackend(config, dtype=ref_dtype), JaxBackend(config, dtype=dtype, device=device)
    ref.init(seed)
    jx.init(seed)
    return ref, jx


def inputs(config, rng, batch=None) -> train.StepInputs:
    b = config.batch_size if batch is None else batch
    spec, k, m = config.spec, config.d_steps, config.g_steps
    return train.StepInputs(rng.standard_normal((k, b, spec.data_size)), rng.standard_normal((k, b, spec.z_size)),
                            rng.standard_normal((m, b, spec.z_size)))


def chunk(config, rng, n, rows, batch=None):
    """(index, z_d, z_g) for train_rounds: n rounds over a dataset of `rows` rows."""
    b = config.batch_size if batch is None else batch
    spec, k, m = config.spec, config.d_steps, config.g_steps
    return (rng.integers(0, rows, size=(n, k, b)), rng.standard_normal((n, k, b, spec.z_size)),
            rng.standard_normal((n, m, b, spec.z_size)))


def assert_close(actual, expected, rtol, atol=None, what="", scale=None):
    """|a - e| <= rtol |e| + atol max(scale, max|e|) elementwise (atol defaults to rtol): normwise, for sums
    that cancel. `scale`: the size of the terms that were summed, when it exceeds the result's."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    atol = rtol if atol is None else atol
    scale = max(float(np.max(np.abs(expected), initial=0.0)), scale or 0.0, 1e-300)
    err = np.abs(actual - expected)
    bound = rtol * np.abs(expected) + atol * scale
    assert np.all(err <= bound), f"{what}: max error {err.max():.3g} (scale {scale:.3g}, rtol {rtol:g})"


def assert_dicts_close(actual: dict, expected: dict, rtol, atol=None, what=""):
    assert list(actual) == list(expected), f"{what}: names/order differ: {list(actual)} vs {list(expected)}"
    for name in expected:
        assert_close(actual[name], expected[name], rtol, atol, f"{what} {name}")


def assert_metrics_close(actual: train.StepMetrics, expected: train.StepMetrics, rtol):
    a, e = actual.to_dict(), expected.to_dict()
    assert a["step"] == e["step"]
    for key in a:
        if key == "step":
            continue
        if np.isnan(e[key]):
            assert np.isnan(a[key]), f"{key}: {a[key]} should be NaN"
        else:
            assert abs(a[key] - e[key]) <= rtol * max(1.0, abs(e[key])), f"{key}: {a[key]} vs {e[key]}"


def cli_against_reference(tmp_path, cli: list[str]) -> dict:
    """Run `python -m backends.jax CLI` and the reference CLI on the same arguments; assert their last checkpoints
    (parameters and optimizer states) agree to 1e-10 and return the reference's checkpoint arrays."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "backends.jax", *cli, "--out", str(tmp_path / "jax")], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert main("reference", [*cli, "--out", str(tmp_path / "ref")]) == 0
    ref, jx = (safetensors.numpy.load_file(str(tmp_path / run / "checkpoints" / "step_000005.safetensors"))
               for run in ("ref", "jax"))
    assert set(ref) == set(jx)
    for name in ref:
        assert np.abs(jx[name] - ref[name]).max() <= 1e-10 * max(1.0, float(np.abs(ref[name]).max())), name
    return ref
