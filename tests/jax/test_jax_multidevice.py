"""Data-parallel training over a 1-D mesh of two CPU devices equals one-device training.

XLA_FLAGS=--xla_force_host_platform_device_count=2 must be set before JAX starts, so the check runs in a
subprocess (this test process's JAX has one CPU device).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json
    import jax
    import numpy as np
    from backends.jax import JaxBackend
    from reference import gan
    from tests.jax.common import ADAM, RMSPROP_MOMENTUM, chunk, inputs, make_config

    assert len(jax.devices("cpu")) == 2, jax.devices()
    report = {}

    def max_diff(a, b):
        return max(float(np.abs(a[k] - b[k]).max()) for k in a)

    for dtype in ("float64", "float32"):
        config = make_config(d_opt=ADAM, g_opt=RMSPROP_MOMENTUM, hidden=(16, 8), batch=8, d_steps=2, g_steps=1)
        data = np.random.default_rng(0).standard_normal((64, 2))
        one, two = JaxBackend(config, dtype=dtype, device="cpu:0"), JaxBackend(config, dtype=dtype, device="cpu:all")
        assert len(one.devices) == 1 and len(two.devices) == 2
        for b in (one, two):
            b.init(1)
            b.set_data(data)
        rng = np.random.default_rng(2)
        chunks = [chunk(config, rng, n, len(data)) for n in (6, 3)]
        steps = [inputs(config, rng) for _ in range(2)]
        metrics = {}
        for name, b in (("one", one), ("two", two)):
            metrics[name] = [m.to_dict() for c in chunks for m in b.train_rounds(*c)]
            metrics[name] += [b.train_step(s).to_dict() for s in steps]
        metric_diff = max(abs(a[k] - e[k]) for a, e in zip(metrics["one"], metrics["two"]) for k in a)
        d1, g1 = one.export_optimizer_state()
        d2, g2 = two.export_optimizer_state()
        z = rng.standard_normal((8, 2 + 1))
        report[dtype] = {
            "params": max_diff(one.export_params(), two.export_params()),
            "state": max(max_diff(d1, d2), max_diff(g1, g2)),
            "metrics": metric_diff,
            "d_grads": max_diff(one.d_grads(data[:8], z)[1], two.d_grads(data[:8], z)[1]),
            "moved": max_diff(one.export_params(), gan.init_params(config.spec, 1)),
        }

    # the state really is replicated on both devices and the batch really is split between them
    carry_devices = {len(leaf.sharding.device_set) for leaf in jax.tree.leaves(two._carry)}
    index, z_d, z_g = chunk(config, np.random.default_rng(3), 4, len(data))
    with jax.enable_x64(False):
        placed = two._put_batch(z_d, 2, strict=True)
        shard_shapes = sorted({tuple(s.data.shape) for s in placed.addressable_shards})
        hlo = two._rounds_jit.lower(two._carry, two._data, two._labels, two._put_batch(index, 2, dtype=np.int32),
                                    placed, two._put_batch(z_g, 2), jax.numpy.int32(4)).compile().as_text()
    report["carry_devices"] = sorted(carry_devices)
    report["shard_shapes"] = [list(s) for s in shard_shapes]
    report["all_reduce"] = "all-reduce" in hlo

    try:  # a batch that does not split evenly is refused for training, with the reason
        two.train_rounds(*chunk(config, np.random.default_rng(0), 1, len(data), batch=7))
        report["odd_batch"] = "accepted"
    except ValueError as error:
        report["odd_batch"] = str(error)
    print("REPORT" + json.dumps(report))
""")


def test_two_devices_match_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.split("REPORT", 1)[1])
    print(report)
    assert report["float64"]["params"] < 1e-12, report
    assert report["float64"]["state"] < 1e-12 and report["float64"]["metrics"] < 1e-12, report
    assert report["float64"]["d_grads"] < 1e-14, report
    assert report["float32"]["params"] < 1e-5 and report["float32"]["metrics"] < 1e-4, report
    assert report["float64"]["moved"] > 1e-2  # the runs compared really did train
    assert report["carry_devices"] == [2]  # parameters and optimizer states replicated on both devices
    assert report["shard_shapes"] == [[4, 2, 4, 3]]  # z_d (4 rounds, k 2, batch 8, z 3): 4 rows per device
    assert report["all_reduce"]  # XLA reduces the gradients across the two devices
    assert "does not divide evenly over the 2 devices" in report["odd_batch"]
