"""Instance noise and the gradient penalties in the JAX backend: d_grads / g_grads, train_step and train_rounds
equal the reference (float64, ~1e-10), the input gradient's norm at 0 has derivative 0, annealing compiles
nothing new, float32 / bfloat16 / a two-device mesh run them, and the CLI trains with them end to end."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from backends.interface import ALL_FEATURES, ReferenceBackend
from backends.jax import JaxBackend
from backends.run.trainer import draw_chunk
from reference import gan, mlp, optim, train
from reference.penalty import PENALTIES, PenaltySpec
from tests.jax.common import assert_dicts_close, assert_metrics_close, cli_against_reference

ROOT = Path(__file__).resolve().parents[2]
ADAM = optim.OptimizerSpec("adam", lr=1e-2, beta1=0.5, beta2=0.999)
LOSS = {"r1": "nonsaturating", "roth": "minimax", "wgan-gp": "wasserstein"}
ACTIVATION = {"r1": "tanh", "roth": "leaky_relu", "wgan-gp": "sigmoid"}  # every second derivative gets used


def make_config(kind, *, sigma=0.0, anneal=0, weight=2.5, d_steps=2, g_steps=1, batch=5, hidden=(6, 4)):
    act = ACTIVATION[kind]
    spec = gan.GANSpec(mlp.MLPSpec(3, hidden, 2, act), mlp.MLPSpec(2, hidden, 1, act, "identity", 0.2), LOSS[kind])
    return train.TrainConfig(spec, ADAM, optim.OptimizerSpec("rmsprop", lr=5e-3, alpha=0.9, momentum=0.5), batch,
                             d_steps, g_steps, penalty=PenaltySpec(kind, weight), instance_noise=sigma,
                             instance_noise_anneal=anneal)


def test_every_feature_is_implemented():
    assert ALL_FEATURES <= JaxBackend.features


@pytest.mark.parametrize("kind", PENALTIES)
def test_d_and_g_grads_match_reference(kind):
    """With and without instance noise, D's penalised loss and its gradient (double backprop by autodiff) and
    G's loss through a noisy D equal the reference's hand-written ones."""
    config = make_config(kind)
    ref, jx = ReferenceBackend(config), JaxBackend(config)
    unpenalised = ReferenceBackend(train.TrainConfig(config.spec, config.d_optimizer, config.g_optimizer))
    ref.init(3)
    params = {k: 3.0 * v if k.startswith("D.") else v for k, v in ref.export_params().items()}  # a steeper D
    for b in (ref, jx, unpenalised):
        b.load_state(params, *ref.export_optimizer_state(), step=0)
    rng = np.random.default_rng(4)
    x, z = 1.5 * rng.standard_normal((5, 2)), rng.standard_normal((5, 3))
    real_noise, fake_noise = 0.3 * rng.standard_normal((5, 2)), 0.3 * rng.standard_normal((5, 2))
    mix = rng.uniform(0, 1, (5, 1))
    for noise in ({}, {"real_noise": real_noise, "fake_noise": fake_noise}):
        loss, grads = jx.d_grads(x, z, mix=mix, **noise)
        ref_loss, ref_grads = ref.d_grads(x, z, mix=mix, **noise)
        assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-12)
        assert_dicts_close(grads, ref_grads, 1e-10, what=f"{kind} D grads {sorted(noise)}")
        assert abs(ref_loss - unpenalised.d_grads(x, z, **noise)[0]) > 1e-3  # the penalty is really there
    clean, _ = jx.d_grads(x, z, mix=mix)
    assert abs(loss - clean) > 1e-4  # and so is the noise
    for noise in (None, fake_noise):
        loss, grads = jx.g_grads(z, fake_noise=noise)
        ref_loss, ref_grads = ref.g_grads(z, fake_noise=noise)
        assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-12)
        assert_dicts_close(grads, ref_grads, 1e-10, what=f"{kind} G grads")


def test_wgan_gp_norm_has_derivative_zero_where_the_input_gradient_vanishes():
    """D's output layer zeroed: every g_n = 0, the penalty is exactly w, and its gradient is 0, not NaN
    (jnp.linalg.norm's gradient at 0 is NaN); the result is the reference's."""
    config = make_config("wgan-gp", weight=10.0)
    ref, jx = ReferenceBackend(config), JaxBackend(config)
    ref.init(0)
    params = ref.export_params()
    params["D.2.weight"] = np.zeros_like(params["D.2.weight"])
    for b in (ref, jx):
        b.load_state(params, *ref.export_optimizer_state(), step=0)
    rng = np.random.default_rng(1)
    x, z, mix = rng.standard_normal((5, 2)), rng.standard_normal((5, 3)), rng.uniform(0, 1, (5, 1))
    loss, grads = jx.d_grads(x, z, mix=mix)
    ref_loss, ref_grads = ref.d_grads(x, z, mix=mix)
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    assert_dicts_close(grads, ref_grads, 1e-12, what="D grads at g = 0")
    # the WGAN loss of a constant critic is 0: all of the loss is the penalty w * (0 - 1)^2
    assert loss == pytest.approx(ref_loss, abs=1e-12) and loss == pytest.approx(10.0, abs=1e-12)


@pytest.mark.parametrize("kind", PENALTIES)
def test_training_with_annealed_noise_and_penalty_matches_reference(kind):
    """train_step and train_rounds (chunks of 2 and 3 rounds, sigma annealed to 0 after 3 rounds) equal the
    reference round by round: metrics (d_penalty too), parameters and optimizer states. Annealing is a
    runtime value: one program each, however sigma changes."""
    config = make_config(kind, sigma=0.4, anneal=3)
    data = np.random.default_rng(0).standard_normal((30, 2))
    ref, step, fast = ReferenceBackend(config), JaxBackend(config), JaxBackend(config)
    for b in (ref, step, fast):
        b.init(2)
    fast.set_data(data)
    rng = np.random.default_rng(5)
    for n in (2, 3):
        index, z_d, z_g, extras = draw_chunk(rng, config, len(data), n)
        assert set(extras) == {"noise_real", "noise_fake", "noise_g"} | ({"mix"} if kind == "wgan-gp" else set())
        fast_metrics = fast.train_rounds(index, z_d, z_g, **extras)
        for r in range(n):
            inputs = train.StepInputs(data[index[r]], z_d[r], z_g[r], **{k: v[r] for k, v in extras.items()})
            expected = ref.train_step(inputs)
            assert expected.d_penalty > 1e-4
            assert_metrics_close(step.train_step(inputs), expected, 1e-10)
            assert_metrics_close(fast_metrics[r], expected, 1e-10)
            for b in (step, fast):
                if b is step or r == n - 1:
                    assert_dicts_close(b.export_params(), ref.export_params(), 1e-10, what=f"params round {r}")
                    for a, e in zip(b.export_optimizer_state(), ref.export_optimizer_state(), strict=True):
                        assert_dicts_close(a, e, 1e-10, what="optimizer state")
    assert ref.step == step.step == fast.step == 5
    assert step.traces["train_step"] == 1 and fast.traces["train_rounds"] == 1


def test_float32_and_bfloat16_train_with_noise_and_penalty():
    """float32 stays near the float64 reference; bfloat16 (mixed precision) runs, finite and roughly there."""
    config = make_config("roth", sigma=0.3, anneal=4, hidden=(8, 8))
    data = np.random.default_rng(0).standard_normal((30, 2))
    index, z_d, z_g, extras = draw_chunk(np.random.default_rng(1), config, len(data), 4)
    ref = ReferenceBackend(config)
    ref.init(1)
    ref.set_data(data)
    expected = ref.train_rounds(index, z_d, z_g, **extras)
    for dtype, rtol in (("float32", 1e-4), ("bfloat16", 0.05)):
        jx = JaxBackend(config, dtype=dtype)
        jx.init(1)
        jx.set_data(data)
        got = jx.train_rounds(index, z_d, z_g, **extras)
        for a, e in zip(got, expected, strict=True):
            assert_metrics_close(a, e, rtol)
        assert_dicts_close(jx.export_params(), ref.export_params(), rtol, what=dtype)


def test_bad_remedy_inputs_are_refused():
    config = make_config("wgan-gp", sigma=0.1)
    jx = JaxBackend(config)
    jx.init(0)
    x, z = np.zeros((4, 2)), np.zeros((4, 3))
    with pytest.raises(ValueError, match="needs the interpolation weights"):
        jx.d_grads(x, z)
    with pytest.raises(ValueError, match="same size"):
        jx.d_grads(x, z[:3], mix=np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"real_noise must have shape \(4, 2\)"):
        jx.d_grads(x, z, real_noise=np.zeros((3, 2)), mix=np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"fake_noise must have shape"):
        jx.g_grads(z, fake_noise=np.zeros((4, 3)))
    jx.set_data(np.zeros((10, 2)))
    index, z_d, z_g, extras = draw_chunk(np.random.default_rng(0), config, 10, 2)
    with pytest.raises(ValueError, match="needs mix"):
        jx.train_rounds(index, z_d, z_g, **{k: v for k, v in extras.items() if k != "mix"})
    with pytest.raises(ValueError, match="missing"):
        jx.train_step(train.StepInputs(np.zeros((2, 5, 2)), np.zeros((2, 5, 3)), np.zeros((1, 5, 3))))
    assert jx.step == 0


CLI = ["train", "--steps", "5", "--penalty", "wgan-gp", "--loss", "wasserstein", "--instance-noise", "0.1",
       "--hidden", "8", "8", "--batch-size", "8", "--train-size", "100", "--sample-every", "5", "--no-progress"]


def test_cli_trains_with_wgan_gp_and_instance_noise_like_the_reference(tmp_path):
    """`python -m backends.jax train --steps 5 --penalty wgan-gp --loss wasserstein --instance-noise 0.1`."""
    cli_against_reference(tmp_path, CLI)
    saved = json.loads((tmp_path / "jax" / "config.json").read_text())
    assert saved["backend"]["name"] == "jax"
    assert saved["train_config"]["penalty"]["kind"] == "wgan-gp" and saved["train_config"]["instance_noise"] == 0.1
    lines = [json.loads(line) for line in (tmp_path / "jax" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 5 and lines[-1]["d_penalty"] > 0


MESH_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    from backends.jax import JaxBackend
    from backends.run.trainer import draw_chunk
    from tests.jax.test_remedies import make_config

    report = {}
    for kind in ("wgan-gp", "r1"):
        config = make_config(kind, sigma=0.3, anneal=3, batch=8)
        data = np.random.default_rng(0).standard_normal((40, 2))
        index, z_d, z_g, extras = draw_chunk(np.random.default_rng(1), config, len(data), 4)
        runs = []
        for device in ("cpu:0", "cpu:all"):
            b = JaxBackend(config, device=device)
            b.init(1)
            b.set_data(data)
            metrics = [m.d_penalty for m in b.train_rounds(index, z_d, z_g, **extras)]
            runs.append((len(b.devices), metrics, b.export_params()))
        (n1, m1, p1), (n2, m2, p2) = runs
        report[kind] = {"devices": [n1, n2], "penalty": m1,
                        "metrics": max(abs(a - b) for a, b in zip(m1, m2)),
                        "params": max(float(np.abs(p1[k] - p2[k]).max()) for k in p1)}
    print("REPORT" + json.dumps(report))
""")


@pytest.mark.slow
def test_two_device_mesh_matches_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MESH_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.split("REPORT", 1)[1])
    for kind, figures in report.items():
        assert figures["devices"] == [1, 2], kind
        assert min(figures["penalty"]) > 0 and figures["metrics"] <= 1e-12 and figures["params"] <= 1e-12, figures
