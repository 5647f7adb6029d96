"""Conditional GANs in the torch backend (one-hot labels on G's and D's inputs), held to the reference.

Also a torchrun worker: `torchrun --nproc_per_node=2 tests/torch/test_conditional.py OUTDIR` trains every DDP_CASES
config on 2 CPU processes (gloo) and writes each rank's parameters and metrics for test_ddp_conditional.
"""

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.interface import ALL_FEATURES, CONDITIONAL, ReferenceBackend
from backends.run import checkpoint
from backends.run.trainer import draw_chunk
from backends.torch import TorchBackend
from reference import gan, train
from reference.penalty import PenaltySpec
from tests.torch.common import (
    assert_dicts_equal,
    assert_ranks_match,
    backends_pair,
    make_config,
    max_rel_diff,
    metrics_close,
    save_rank_results,
    torchrun,
    toy_data,
)

ROOT = Path(__file__).resolve().parents[2]
CLASSES = 3


def conditional_config(loss="nonsaturating", *, classes=CLASSES, sigma=0.0, anneal=0, **kwargs):
    """make_config's GAN with `classes` one-hot label inputs on G and D, and optional instance noise."""
    config = make_config(loss, **kwargs)
    g, d = config.spec.generator, config.spec.discriminator
    spec = gan.GANSpec(dataclasses.replace(g, in_size=g.in_size + classes),
                       dataclasses.replace(d, in_size=d.in_size + classes), loss, num_classes=classes)
    return dataclasses.replace(config, spec=spec, instance_noise=sigma, instance_noise_anneal=anneal)


def labelled_data(config, n=256, seed=0):
    return toy_data(config, n, seed), np.random.default_rng([seed, 5]).integers(0, config.spec.num_classes, n)


def queries(config, batch=7, seed=0):
    """x_real, z, their labels and (with instance noise) the scaled noise."""
    rng = np.random.default_rng(seed)
    d, k, sigma = config.spec.data_size, config.spec.num_classes, config.instance_noise
    x, z = rng.standard_normal((batch, d)), rng.standard_normal((batch, config.spec.z_size))
    yr, yf = rng.integers(0, k, batch), rng.integers(0, k, batch)
    noise = {}
    if sigma:
        noise = dict(real_noise=sigma * rng.standard_normal((batch, d)),
                     fake_noise=sigma * rng.standard_normal((batch, d)))
    return x, z, yr, yf, noise


def test_the_backend_lists_the_conditional_feature():
    assert TorchBackend.features == ALL_FEATURES | {CONDITIONAL}


# ----- forward passes and the two steps' gradients -----

@pytest.mark.parametrize("activation", ["tanh", "leaky_relu"])
@pytest.mark.parametrize("sigma", [0.0, 0.3])
@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wasserstein"])
def test_forward_and_grads_match_the_reference_in_float64(loss, sigma, activation):
    config = conditional_config(loss, sigma=sigma, hidden_activation=activation)
    ref, tb = backends_pair(config, seed=1)
    x, z, yr, yf, noise = queries(config)
    np.testing.assert_allclose(tb.generate(z, labels=yf), ref.generate(z, labels=yf), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tb.discriminate(x, labels=yr), ref.discriminate(x, labels=yr), rtol=1e-12, atol=1e-13)
    ref_loss, ref_grads = ref.d_grads(x, z, real_labels=yr, fake_labels=yf, **noise)
    loss_value, grads = tb.d_grads(x, z, real_labels=yr, fake_labels=yf, **noise)
    assert loss_value == pytest.approx(ref_loss, rel=1e-12, abs=1e-13)
    assert max_rel_diff(ref_grads, grads) < 1e-10
    fake_noise = noise.get("fake_noise")
    ref_loss, ref_grads = ref.g_grads(z, fake_noise=fake_noise, labels=yf)
    loss_value, grads = tb.g_grads(z, fake_noise=fake_noise, labels=yf)
    assert loss_value == pytest.approx(ref_loss, rel=1e-12, abs=1e-13)
    assert max_rel_diff(ref_grads, grads) < 1e-10
    # the labels matter: other labels give other samples, scores and gradients
    other = (yf + 1) % CLASSES
    assert np.max(np.abs(tb.generate(z, labels=other) - tb.generate(z, labels=yf))) > 1e-6
    assert max_rel_diff(tb.g_grads(z, fake_noise=fake_noise, labels=other)[1], grads) > 1e-6


def test_d_grads_depend_on_both_label_sets():
    config = conditional_config("nonsaturating", hidden_activation="tanh")
    ref, tb = backends_pair(config, seed=2)
    x, z, yr, yf, _ = queries(config, seed=4)
    _, base = tb.d_grads(x, z, real_labels=yr, fake_labels=yf)
    for kwargs in (dict(real_labels=(yr + 1) % CLASSES, fake_labels=yf),
                   dict(real_labels=yr, fake_labels=(yf + 1) % CLASSES)):
        _, ref_grads = ref.d_grads(x, z, **kwargs)
        _, grads = tb.d_grads(x, z, **kwargs)
        assert max_rel_diff(ref_grads, grads) < 1e-10
        assert max_rel_diff(base, grads) > 1e-6


def test_float32_is_close_to_the_reference():
    config = conditional_config("minimax", sigma=0.2, hidden_activation="tanh")
    ref, tb = backends_pair(config, seed=3, dtype="float32")
    x, z, yr, yf, noise = queries(config, batch=16, seed=5)
    out = tb.generate(z, labels=yf)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref.generate(z, labels=yf), rtol=1e-5, atol=1e-6)
    for (l1, g1), (l2, g2) in [(ref.d_grads(x, z, real_labels=yr, fake_labels=yf, **noise),
                                tb.d_grads(x, z, real_labels=yr, fake_labels=yf, **noise)),
                               (ref.g_grads(z, labels=yf), tb.g_grads(z, labels=yf))]:
        assert l2 == pytest.approx(l1, rel=1e-5, abs=1e-6)
        assert max_rel_diff(g1, g2) < 1e-5


# ----- refusals -----

def test_bad_labels_are_refused():
    config = conditional_config()
    _, tb = backends_pair(config)
    x, z, yr, yf, _ = queries(config)
    with pytest.raises(ValueError, match="needs class labels"):
        tb.generate(z)
    with pytest.raises(ValueError, match="needs class labels"):
        tb.discriminate(x)
    with pytest.raises(ValueError, match="needs class labels"):
        tb.d_grads(x, z, real_labels=yr)
    with pytest.raises(ValueError, match="needs class labels"):
        tb.g_grads(z)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        tb.generate(z, labels=np.full(len(z), CLASSES))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        tb.d_grads(x, z, real_labels=-np.ones(len(x), dtype=int), fake_labels=yf)
    with pytest.raises(ValueError, match="must have shape"):
        tb.g_grads(z, labels=yf[:3])
    with pytest.raises(TypeError, match="integer numpy array"):
        tb.discriminate(x, labels=yr.astype(float))
    # set_data: labels required, checked, and nothing changes when they are refused
    data, labels = labelled_data(config)
    with pytest.raises(ValueError, match="needs set_data"):
        tb.set_data(data)
    with pytest.raises(ValueError, match="must have shape"):
        tb.set_data(data, labels[:-1])
    with pytest.raises(ValueError, match="must lie in"):
        tb.set_data(data, labels + CLASSES)
    assert tb._data_t is None
    tb.set_data(data, labels)
    index, z_d, z_g, extras = draw_chunk(np.random.default_rng(0), config, len(data), 2)
    with pytest.raises(ValueError, match="needs labels_g"):
        tb.train_rounds(index, z_d, z_g, labels_fake=extras["labels_fake"])
    with pytest.raises(ValueError, match="labels_fake must lie in"):
        tb.train_rounds(index, z_d, z_g, **{**extras, "labels_fake": extras["labels_fake"] + CLASSES})
    inputs = train.StepInputs(data[index[0]], z_d[0], z_g[0], labels_real=labels[index[0]],
                              labels_fake=extras["labels_fake"][0])
    with pytest.raises(ValueError, match="labels_g is missing"):
        tb.train_step(inputs)
    assert tb.step == 0


def test_an_unconditional_backend_refuses_labels_and_a_conditional_penalty_is_refused():
    _, tb = backends_pair(make_config())
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match="unconditional"):
        tb.generate(z, labels=np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="not conditional"):
        tb.set_data(np.zeros((10, 2)), np.zeros(10, dtype=int))
    with pytest.raises(ValueError):
        dataclasses.replace(conditional_config(), penalty=PenaltySpec("r1", 1.0))


# ----- training: train_step and train_rounds round by round -----

def train_and_compare(config, ref, tb, seed, chunks=(1, 1, 2), tol=1e-10):
    """Both backends on the trainer's draws: the first chunk through train_step, the others through train_rounds;
    after every chunk, parameters and optimizer states agree, and every round's metrics do."""
    data, labels = labelled_data(config)
    rng = np.random.default_rng([seed, 2])
    for b in (ref, tb):
        b.set_data(data, labels)
    all_metrics = []
    for c, n in enumerate(chunks):
        index, z_d, z_g, extras = draw_chunk(rng, config, len(data), n)
        if c == 0:
            pairs = []
            for r in range(n):
                inputs = train.StepInputs(data[index[r]], z_d[r], z_g[r], labels_real=labels[index[r]],
                                          **{k: v[r] for k, v in extras.items()})
                pairs.append((ref.train_step(inputs), tb.train_step(inputs)))
        else:
            pairs = list(zip(ref.train_rounds(index, z_d, z_g, **extras), tb.train_rounds(index, z_d, z_g, **extras),
                             strict=True))
        for m_ref, m_tb in pairs:
            metrics_close(m_ref, m_tb, tol)
            all_metrics.append(m_tb)
        assert tb.step == ref.step
        assert max_rel_diff(ref.export_params(), tb.export_params()) < tol
        for s_ref, s_tb in zip(ref.export_optimizer_state(), tb.export_optimizer_state(), strict=True):
            assert max_rel_diff(s_ref, s_tb) < tol
    return all_metrics


@pytest.mark.parametrize("loss, opt, sigma", [("nonsaturating", "adam", 0.0), ("minimax", "sgd_momentum", 0.3),
                                              ("wasserstein", "rmsprop", 0.2)])
def test_training_matches_the_reference_round_by_round(loss, opt, sigma):
    config = conditional_config(loss, opt=opt, sigma=sigma, anneal=3 if sigma else 0, d_steps=2, g_steps=1)
    ref, tb = backends_pair(config, seed=4)
    metrics = train_and_compare(config, ref, tb, seed=4)
    assert [m.step for m in metrics] == [1, 2, 3, 4]


def test_training_in_float32_stays_close_to_the_reference():
    config = conditional_config("nonsaturating", opt="adam", sigma=0.2, anneal=3)
    ref, tb = backends_pair(config, seed=7, dtype="float32")
    train_and_compare(config, ref, tb, seed=7, chunks=(1, 2), tol=1e-4)


def test_the_real_labels_come_from_set_data():
    """The same chunk with the rows' labels permuted trains to other parameters."""
    config = conditional_config("nonsaturating", opt="adam")
    data, labels = labelled_data(config)
    index, z_d, z_g, extras = draw_chunk(np.random.default_rng(1), config, len(data), 2)
    results = []
    for rows_labels in (labels, (labels + 1) % CLASSES):
        _, tb = backends_pair(config, seed=8)
        tb.set_data(data, rows_labels)
        tb.train_rounds(index, z_d, z_g, **extras)
        results.append(tb.export_params())
    assert max_rel_diff(*results) > 1e-6


def test_train_rounds_sends_the_labels_in_the_single_upload(monkeypatch):
    config = conditional_config("nonsaturating", sigma=0.1)
    _, tb = backends_pair(config, seed=0)
    tb.set_data(*labelled_data(config))
    index, z_d, z_g, extras = draw_chunk(np.random.default_rng(0), config, 256, 2)
    calls = []
    upload = TorchBackend._upload

    def spy(self, *arrays):
        calls.append([(a.shape, a.dtype.kind) for a in arrays])
        out = upload(self, *arrays)
        for a, t in zip(arrays, out, strict=True):  # every array comes back in its place, with its values
            np.testing.assert_array_equal(t.cpu().numpy(), a)
        return out

    monkeypatch.setattr(TorchBackend, "_upload", spy)
    tb.train_rounds(index, z_d, z_g, **extras)
    names = ("noise_real", "noise_fake", "noise_g", "labels_fake", "labels_g")
    assert calls == [[(index.shape, "i"), (z_d.shape, "f"), (z_g.shape, "f"),
                      *((extras[k].shape, extras[k].dtype.kind) for k in names)]]


# ----- torch.compile -----

@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_conditional_training_matches_the_reference():
    config = conditional_config("nonsaturating", opt="adam", sigma=0.2, anneal=3)
    ref, compiled = backends_pair(config, seed=5, compile=True)
    assert compiled.compile
    train_and_compare(config, ref, compiled, seed=5, chunks=(1, 2))
    x, z, yr, yf, noise = queries(config)
    (l1, g1), (l2, g2) = ref.d_grads(x, z, real_labels=yr, fake_labels=yf, **noise), \
        compiled.d_grads(x, z, real_labels=yr, fake_labels=yf, **noise)
    assert l2 == pytest.approx(l1, rel=1e-12) and max_rel_diff(g1, g2) < 1e-10
    (l1, g1), (l2, g2) = ref.g_grads(z, labels=yf), compiled.g_grads(z, labels=yf)
    assert l2 == pytest.approx(l1, rel=1e-12) and max_rel_diff(g1, g2) < 1e-10


# ----- the CLI -----

def _final(run: Path) -> checkpoint.Checkpoint:
    return checkpoint.load(checkpoint.resolve(run))


def _cli_train(backend, out, steps, *extra):
    from backends.cli import main
    return main(backend, ["train", "--out", str(out), "--steps", str(steps), "--hidden", "6", "--batch-size", "8",
                          "--train-size", "300", "--no-progress", "--log-every", "1", "--device", "cpu",
                          "--conditional", *extra])


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_cli_trains_a_conditional_gan_like_the_reference(tmp_path):
    assert _cli_train("torch", tmp_path / "torch", 5) == 0
    assert _cli_train("reference", tmp_path / "ref", 5) == 0
    written = json.loads((tmp_path / "torch" / "config.json").read_text())["train_config"]
    assert written["spec"]["num_classes"] > 1
    records, ref_records = _records(tmp_path / "torch"), _records(tmp_path / "ref")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    for a, b in zip(ref_records, records, strict=True):
        for key in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-12), key
    a, b = _final(tmp_path / "ref"), _final(tmp_path / "torch")
    for x, y in ((a.params, b.params), (a.d_opt_state, b.d_opt_state), (a.g_opt_state, b.g_opt_state)):
        assert list(x) == list(y)
        for name in x:
            np.testing.assert_allclose(y[name], x[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("options", [[], ["--loss", "wasserstein", "--instance-noise", "0.2",
                                          "--instance-noise-anneal", "4"]])
def test_cli_resume_of_a_conditional_gan_is_bit_for_bit(tmp_path, options):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert _cli_train("torch", whole, 6, *options) == 0
    assert _cli_train("torch", split, 3, *options) == 0
    from backends.cli import main
    assert main("torch", ["train", "--resume", str(split), "--steps", "6", "--no-progress"]) == 0
    a, b = _final(whole), _final(split)
    assert a.step == b.step == 6
    for x, y in ((a.params, b.params), (a.d_opt_state, b.d_opt_state), (a.g_opt_state, b.g_opt_state)):
        assert_dicts_equal(x, y)
    assert a.rng_state == b.rng_state
    assert (whole / "metrics.jsonl").read_text() == (split / "metrics.jsonl").read_text()


# ----- DDP: 2 gloo processes against 1 -----

DDP_CASES = {"plain": ("nonsaturating", 0.0), "noisy_wgan": ("wasserstein", 0.3)}
DDP_SEED = 11


def ddp_run(backend, config) -> list[dict]:
    """2 rounds through train_step, then 2 through train_rounds, on the trainer's global draws."""
    data, labels = labelled_data(config)
    rng = np.random.default_rng([DDP_SEED, 2])
    backend.init(DDP_SEED)
    index, z_d, z_g, extras = draw_chunk(rng, config, len(data), 4)
    metrics = [backend.train_step(train.StepInputs(data[index[r]], z_d[r], z_g[r], labels_real=labels[index[r]],
                                                   **{k: v[r] for k, v in extras.items()})) for r in range(2)]
    backend.set_data(data, labels)
    metrics += backend.train_rounds(index[2:], z_d[2:], z_g[2:], **{k: v[2:] for k, v in extras.items()})
    return [m.to_dict() for m in metrics]


def ddp_config(name):
    loss, sigma = DDP_CASES[name]
    return conditional_config(loss, sigma=sigma, anneal=3 if sigma else 0, batch_size=8)


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_conditional")
    torchrun([__file__, str(out)], out)
    return out


@pytest.mark.parametrize("name", list(DDP_CASES))
def test_ddp_conditional_matches_one_process_and_the_reference(ddp_results, name):
    config = ddp_config(name)
    single = TorchBackend(config, device="cpu")
    expected_metrics = ddp_run(single, config)
    expected = single.export_params()
    ref = ReferenceBackend(config)
    ddp_run(ref, config)
    assert max_rel_diff(ref.export_params(), expected) < 1e-10
    assert len(expected_metrics) == 4
    assert_ranks_match(ddp_results, name, expected, expected_metrics)


def _ddp_worker(out: Path) -> None:
    save_rank_results(out, DDP_CASES, ddp_config, ddp_run)


if __name__ == "__main__":
    _ddp_worker(Path(sys.argv[1]))
