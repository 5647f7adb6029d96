"""Conditional GANs in the CuPy backend (on NumPy here): one-hot label columns in G's and D's input buffers,
against the ReferenceBackend in float64 (and float32 within float32's error), round by round, and the CLI."""

import json

import numpy as np
import pytest

from backends.cupy.backend import CupyBackend
from backends.interface import ALL_FEATURES, CONDITIONAL, ReferenceBackend
from reference import gan, mlp, optim
from reference.train import StepInputs, TrainConfig
from tests.cupy.test_remedies import _assert_dicts_close, _assert_metrics_close, cli_against_reference

CLASSES = 3


def _config(loss="nonsaturating", hidden="tanh", noise=0.0, **options):
    spec = gan.GANSpec(mlp.MLPSpec(3 + CLASSES, (5,), 2, "tanh"),
                       mlp.MLPSpec(2 + CLASSES, (6, 4), 1, hidden, "identity", 0.2), loss, num_classes=CLASSES)
    return TrainConfig(spec, batch_size=4, instance_noise=noise, instance_noise_anneal=3 if noise else 0, **options)


def _pair(config, seed=0, dtype="float64"):
    ref, cp = ReferenceBackend(config, dtype=dtype), CupyBackend(config, dtype=dtype, device="cpu")
    ref.init(seed)
    cp.init(seed)
    return ref, cp


def test_conditional_is_a_feature():
    assert CupyBackend.features == ALL_FEATURES | {CONDITIONAL}
    CupyBackend(_config(), device="cpu")


@pytest.mark.parametrize("loss, hidden", [("nonsaturating", "tanh"), ("minimax", "leaky_relu"),
                                          ("wasserstein", "sigmoid")])
@pytest.mark.parametrize("noisy", [False, True])
def test_forward_and_grads_match_the_reference(loss, hidden, noisy):
    ref, cp = _pair(_config(loss, hidden), 2)
    rng = np.random.default_rng(5)
    x, z = rng.standard_normal((4, 2)), rng.standard_normal((5, 3))
    yr, yf = np.array([0, 2, 1, 2]), np.array([1, 1, 0, 2, 0])
    np.testing.assert_allclose(cp.generate(z, labels=yf), ref.generate(z, labels=yf), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(cp.discriminate(x, labels=yr), ref.discriminate(x, labels=yr), rtol=1e-12, atol=1e-13)
    # the label matters: another class gives another output
    assert np.max(np.abs(cp.generate(z, labels=(yf + 1) % CLASSES) - cp.generate(z, labels=yf))) > 1e-3
    noise = {}
    if noisy:
        noise = dict(real_noise=0.3 * rng.standard_normal((4, 2)), fake_noise=0.3 * rng.standard_normal((5, 2)))
    loss_cp, grads_cp = cp.d_grads(x, z, real_labels=yr, fake_labels=yf, **noise)
    loss_ref, grads_ref = ref.d_grads(x, z, real_labels=yr, fake_labels=yf, **noise)
    assert loss_cp == pytest.approx(loss_ref, rel=1e-12, abs=1e-13)
    _assert_dicts_close(grads_cp, grads_ref, rtol=1e-10, atol=1e-12)
    g_noise = {"fake_noise": noise["fake_noise"]} if noisy else {}
    loss_cp, grads_cp = cp.g_grads(z, labels=yf, **g_noise)
    loss_ref, grads_ref = ref.g_grads(z, labels=yf, **g_noise)
    assert loss_cp == pytest.approx(loss_ref, rel=1e-12, abs=1e-13)
    _assert_dicts_close(grads_cp, grads_ref, rtol=1e-10, atol=1e-12)
    assert np.any(grads_cp["G.0.weight"][3:] != 0)  # the label rows of G's first layer get gradient


def test_labels_are_required_and_checked():
    _, cp = _pair(_config())
    z, x = np.zeros((2, 3)), np.zeros((2, 2))
    with pytest.raises(ValueError, match="needs class labels"):
        cp.generate(z)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cp.discriminate(x, labels=np.array([0, 3]))
    with pytest.raises(TypeError, match="integer"):
        cp.g_grads(z, labels=np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="set_data"):
        cp.set_data(np.zeros((5, 2)))
    plain = CupyBackend(TrainConfig(gan.GANSpec(mlp.MLPSpec(3, (5,), 2), mlp.MLPSpec(2, (4,), 1)), batch_size=2),
                        dtype="float64", device="cpu")
    plain.init(0)
    with pytest.raises(ValueError, match="unconditional"):
        plain.generate(z, labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="not conditional"):
        plain.set_data(np.zeros((5, 2)), np.zeros(5, dtype=int))


def _chunk(config, n, rows, seed):
    rng = np.random.default_rng(seed)
    k, m, b, d, zs = config.d_steps, config.g_steps, config.batch_size, config.spec.data_size, config.spec.z_size
    index = rng.integers(0, rows, (n, k, b))
    z_d, z_g = rng.standard_normal((n, k, b, zs)), rng.standard_normal((n, m, b, zs))
    extras = {"labels_fake": rng.integers(0, CLASSES, (n, k, b)), "labels_g": rng.integers(0, CLASSES, (n, m, b))}
    if config.needs_noise:
        extras.update(noise_real=rng.standard_normal((n, k, b, d)), noise_fake=rng.standard_normal((n, k, b, d)),
                      noise_g=rng.standard_normal((n, m, b, d)))
    return index, z_d, z_g, extras


def _inputs(data, labels, index, z_d, z_g, extras, r):
    return StepInputs(data[index[r]], z_d[r], z_g[r], labels_real=labels[index[r]],
                      **{k: v[r] for k, v in extras.items()})


@pytest.mark.parametrize("loss, noise", [("nonsaturating", 0.3), ("wasserstein", 0.0), ("minimax", 0.0)])
def test_train_step_and_train_rounds_match_the_reference_round_by_round(loss, noise):
    adam = optim.OptimizerSpec("adam", lr=1e-2, beta1=0.0, beta2=0.9)
    config = _config(loss, noise=noise, d_optimizer=adam, g_optimizer=adam, d_steps=2, g_steps=2,
                     clip_value=0.5 if loss == "wasserstein" else None)
    rng = np.random.default_rng(0)
    data, labels = 2 * rng.standard_normal((40, 2)), rng.integers(0, CLASSES, 40)
    index, z_d, z_g, extras = _chunk(config, 5, len(data), 1)
    ref, stepped = _pair(config, 0)
    _, chunked = _pair(config, 0)
    chunked.set_data(data, labels)
    rounds = chunked.train_rounds(index[:3], z_d[:3], z_g[:3], **{k: v[:3] for k, v in extras.items()})
    rounds += chunked.train_rounds(index[3:], z_d[3:], z_g[3:], **{k: v[3:] for k, v in extras.items()})
    for r in range(5):
        inputs = _inputs(data, labels, index, z_d, z_g, extras, r)
        expected, ours = ref.train_step(inputs), stepped.train_step(inputs)
        _assert_metrics_close(ours, expected)
        np.testing.assert_array_equal(list(rounds[r].to_dict().values()), list(ours.to_dict().values()))
        _assert_dicts_close(stepped.export_params(), ref.export_params(), rtol=1e-9, atol=1e-11)
    a, b = chunked.export_params(), stepped.export_params()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_the_real_batches_labels_come_from_set_data():
    """Changing the data's labels changes the round: D reads them through the gather from the device copy."""
    config = _config()
    rng = np.random.default_rng(1)
    data, labels = rng.standard_normal((10, 2)), rng.integers(0, CLASSES, 10)
    index, z_d, z_g, extras = _chunk(config, 1, 10, 2)
    results = []
    for lab in (labels, (labels + 1) % CLASSES):
        ref, cp = _pair(config, 3)
        cp.set_data(data, lab)
        results.append(cp.train_rounds(index, z_d, z_g, **extras)[0])
        _assert_metrics_close(results[-1], ref.train_step(_inputs(data, lab, index, z_d, z_g, extras, 0)))
    assert results[0].d_loss != results[1].d_loss


def test_float32_stays_within_float32_error_of_the_reference():
    config = _config(noise=0.2)
    rng = np.random.default_rng(0)
    data, labels = rng.standard_normal((40, 2)), rng.integers(0, CLASSES, 40)
    index, z_d, z_g, extras = _chunk(config, 4, len(data), 2)
    ref64, _ = _pair(config, 1)
    ref32, cp32 = _pair(config, 1, "float32")
    x, z, y = rng.standard_normal((4, 2)), rng.standard_normal((4, 3)), np.array([2, 0, 1, 1])
    out = cp32.generate(z, labels=y)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref64.generate(z, labels=y), rtol=1e-5, atol=1e-6)
    loss64, grads64 = ref64.d_grads(x, z, real_labels=y, fake_labels=y[::-1].copy())
    loss32, grads32 = cp32.d_grads(x, z, real_labels=y, fake_labels=y[::-1].copy())
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for name in grads64:
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=1e-4, atol=1e-5, err_msg=name)
    cp32.set_data(data, labels)
    cp32.train_rounds(index, z_d, z_g, **extras)
    for r in range(4):
        inputs = _inputs(data, labels, index, z_d, z_g, extras, r)
        ref64.train_step(inputs)
        ref32.train_step(inputs)
    exact = ref64.export_params()
    err = lambda b: max(np.max(np.abs(b.export_params()[k] - exact[k])) for k in exact)  # noqa: E731
    assert err(cp32) <= 10 * err(ref32) + 1e-6 and err(cp32) < 1e-3


def test_cli_train_conditional_matches_the_reference_cli(tmp_path):
    cli_against_reference(tmp_path, ["train", "--conditional", "--steps", "5", "--no-progress"])
    config = json.loads((tmp_path / "cupy" / "config.json").read_text())["train_config"]
    assert config["spec"]["num_classes"] >= 2
