"""Instance noise and gradient penalties in the torch backend, held to the reference.

Also a torchrun worker: `torchrun --nproc_per_node=2 tests/torch/test_remedies.py OUTDIR` trains every DDP_CASES
config on 2 CPU processes (gloo) and writes each rank's parameters and metrics for test_ddp_with_penalties.
"""

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.interface import ReferenceBackend
from backends.run import checkpoint
from backends.run.trainer import draw_chunk
from backends.torch import TorchBackend
from reference import train
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

# (penalty kind, loss): every penalty, on the loss it is meant for and on one other
CASES = [("r1", "nonsaturating"), ("r1", "wasserstein"), ("roth", "minimax"), ("roth", "nonsaturating"),
         ("wgan-gp", "wasserstein"), ("wgan-gp", "nonsaturating")]


def remedy_config(kind, loss, *, sigma=0.3, anneal=0, weight=2.5, activation="tanh", **kwargs):
    """A small config with a penalty and instance noise; tanh hidden units give the double backward's f''."""
    config = make_config(loss, hidden_activation=activation, **kwargs)
    clip = None if kind == "wgan-gp" else config.clip_value  # WGAN-GP replaces weight clipping
    return dataclasses.replace(config, clip_value=clip, penalty=None if kind is None else PenaltySpec(kind, weight),
                               instance_noise=sigma, instance_noise_anneal=anneal)


def step_queries(config, batch=7, seed=0):
    """x_real, z and the optional inputs of d_grads, noise already scaled by the config's sigma."""
    rng = np.random.default_rng(seed)
    d, sigma = config.spec.data_size, config.instance_noise
    x, z = rng.standard_normal((batch, d)), rng.standard_normal((batch, config.spec.z_size))
    options = {}
    if sigma:
        options = dict(real_noise=sigma * rng.standard_normal((batch, d)),
                       fake_noise=sigma * rng.standard_normal((batch, d)))
    if config.needs_mix:
        options["mix"] = rng.uniform(0.0, 1.0, (batch, 1))
    return x, z, options


# ----- d_grads / g_grads -----

@pytest.mark.parametrize("activation", ["tanh", "leaky_relu"])
@pytest.mark.parametrize("sigma", [0.0, 0.3])
@pytest.mark.parametrize("kind, loss", CASES)
def test_d_and_g_grads_match_the_reference_in_float64(kind, loss, sigma, activation):
    config = remedy_config(kind, loss, sigma=sigma, activation=activation)
    ref, tb = backends_pair(config, seed=1)
    x, z, options = step_queries(config)
    ref_loss, ref_grads = ref.d_grads(x, z, **options)
    loss_value, grads = tb.d_grads(x, z, **options)
    assert loss_value == pytest.approx(ref_loss, rel=1e-12, abs=1e-13)
    assert max_rel_diff(ref_grads, grads) < 1e-10
    # the penalty is part of the loss and of the gradient: without it both are different
    plain = ReferenceBackend(dataclasses.replace(config, penalty=None))
    plain.init(1)
    plain_loss, plain_grads = plain.d_grads(x, z, real_noise=options.get("real_noise"),
                                            fake_noise=options.get("fake_noise"))
    assert abs(loss_value - plain_loss) > 1e-6 and max_rel_diff(plain_grads, grads) > 1e-6
    fake_noise = options.get("fake_noise")
    ref_loss, ref_grads = ref.g_grads(z, fake_noise=fake_noise)
    loss_value, grads = tb.g_grads(z, fake_noise=fake_noise)
    assert loss_value == pytest.approx(ref_loss, rel=1e-12, abs=1e-13)
    assert max_rel_diff(ref_grads, grads) < 1e-10


@pytest.mark.parametrize("kind, loss", CASES[::2])
def test_d_and_g_grads_in_float32_are_close_to_the_reference(kind, loss):
    config = remedy_config(kind, loss)
    ref, tb = backends_pair(config, seed=2, dtype="float32")
    x, z, options = step_queries(config, batch=16, seed=3)
    for (l1, g1), (l2, g2) in [(ref.d_grads(x, z, **options), tb.d_grads(x, z, **options)),
                               (ref.g_grads(z, fake_noise=options["fake_noise"]),
                                tb.g_grads(z, fake_noise=options["fake_noise"]))]:
        assert l2 == pytest.approx(l1, rel=1e-5, abs=1e-6)
        assert max_rel_diff(g1, g2) < 1e-5
        assert all(v.dtype == np.float64 for v in g2.values())


def test_wgan_gp_gradient_is_zero_where_the_input_gradient_vanishes():
    """A critic whose last layer is 0 has g = 0 for every sample: (||g|| - 1)^2 = 1 with no gradient through the
    norm there (torch.linalg.vector_norm's backward; sqrt of a sum of squares would give NaN)."""
    config = remedy_config("wgan-gp", "wasserstein", sigma=0.0, weight=4.0)
    ref, tb = backends_pair(config, seed=3)
    params = ref.export_params()
    params["D.2.weight"] = np.zeros_like(params["D.2.weight"])
    d_state, g_state = ref.export_optimizer_state()
    for backend in (ref, tb):
        backend.load_state(params, d_state, g_state, 0)
    x, z, options = step_queries(config)
    plain = ReferenceBackend(dataclasses.replace(config, penalty=None))
    plain.load_state(params, d_state, g_state, 0)
    plain_loss, plain_grads = plain.d_grads(x, z)
    (ref_loss, ref_grads), (loss, grads) = ref.d_grads(x, z, **options), tb.d_grads(x, z, **options)
    assert loss == pytest.approx(plain_loss + 4.0, rel=1e-14) and ref_loss == pytest.approx(loss, rel=1e-14)
    assert all(np.all(np.isfinite(v)) for v in grads.values())
    assert max_rel_diff(ref_grads, grads) < 1e-12
    assert max_rel_diff(plain_grads, grads) < 1e-12  # the penalty adds nothing to the gradient


def test_bad_optional_inputs_are_refused():
    config = remedy_config("wgan-gp", "wasserstein")
    _, tb = backends_pair(config)
    x, z, options = step_queries(config)
    with pytest.raises(ValueError, match="needs the interpolation weights"):
        tb.d_grads(x, z, real_noise=options["real_noise"], fake_noise=options["fake_noise"])
    with pytest.raises(ValueError, match="real_noise must be a floating-point array of shape"):
        tb.d_grads(x, z, **{**options, "real_noise": options["real_noise"][:3]})
    with pytest.raises(ValueError, match="batches must have the same shape"):
        tb.d_grads(x, z[:5], **{**options, "fake_noise": None})
    with pytest.raises(ValueError, match="fake_noise must be"):
        tb.g_grads(z, fake_noise=np.zeros((len(z), 5)))


def test_amp_with_a_penalty_is_refused_and_the_backend_lists_every_feature():
    from backends.interface import ALL_FEATURES
    assert ALL_FEATURES <= TorchBackend.features
    with pytest.raises(ValueError, match="amp=True with a gradient penalty"):
        TorchBackend(remedy_config("r1", "nonsaturating"), dtype="float32", device="cpu", amp=True)


# ----- training: train_step and train_rounds round by round -----

def train_and_compare(config, ref, tb, seed, chunks=(1, 1, 1, 2), tol=1e-10):
    """Train both backends on the trainer's draws: the first chunk's rounds through train_step, the others through
    train_rounds; after every chunk, parameters and optimizer states agree, and every round's metrics do."""
    data = toy_data(config)
    rng = np.random.default_rng([seed, 2])
    for b in (ref, tb):
        b.set_data(data)
    all_metrics = []
    for c, n in enumerate(chunks):
        index, z_d, z_g, extras = draw_chunk(rng, config, len(data), n)
        if c == 0:
            pairs = []
            for r in range(n):
                inputs = train.StepInputs(data[index[r]], z_d[r], z_g[r], **{k: v[r] for k, v in extras.items()})
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


@pytest.mark.parametrize("kind, loss", [(None, "nonsaturating"), *CASES[::2], ("wgan-gp", "nonsaturating")])
def test_training_with_annealed_noise_and_a_penalty_matches_the_reference(kind, loss):
    # sigma 0.3 decays to 0 over 3 rounds: rounds 1-3 are noisy (0.3, 0.2, 0.1), rounds 4-5 are not
    config = remedy_config(kind, loss, anneal=3, opt="adam", d_steps=2, g_steps=1)
    ref, tb = backends_pair(config, seed=4)
    metrics = train_and_compare(config, ref, tb, seed=4)
    assert [m.step for m in metrics] == [1, 2, 3, 4, 5]
    if kind is None:
        assert all(m.d_penalty == 0.0 for m in metrics)
    else:
        assert all(m.d_penalty > 0 for m in metrics)


def test_noise_is_scaled_by_the_rounds_completed_before_each_round():
    """A run loaded at step 2 of a 4-round anneal uses sigma = 0.15 in its next round, not 0.3."""
    config = remedy_config("r1", "minimax", anneal=4, opt="sgd_momentum")
    ref, tb = backends_pair(config, seed=6)
    params, (d_state, g_state) = ref.export_params(), ref.export_optimizer_state()
    for b in (ref, tb):
        b.load_state(params, d_state, g_state, 2)
    train_and_compare(config, ref, tb, seed=6, chunks=(1, 2))
    # and the noise matters: the same inputs with the noise dropped give another result
    other = remedy_config("r1", "minimax", sigma=0.0, opt="sgd_momentum")
    _, plain = backends_pair(other, seed=6)
    plain.load_state(params, d_state, g_state, 2)
    inputs = train.draw_inputs(config, toy_data(config), np.random.default_rng([6, 2]))
    plain.train_step(dataclasses.replace(inputs, noise_real=None, noise_fake=None, noise_g=None))
    assert max_rel_diff(plain.export_params(), tb.export_params()) > 1e-6


def test_training_in_float32_stays_close_to_the_reference():
    config = remedy_config("roth", "minimax", anneal=3, opt="adam")
    ref, tb = backends_pair(config, seed=7, dtype="float32")
    train_and_compare(config, ref, tb, seed=7, chunks=(1, 2), tol=1e-4)


def test_train_rounds_sends_the_extras_in_the_single_upload(monkeypatch):
    config = remedy_config("wgan-gp", "wasserstein", anneal=3)
    _, tb = backends_pair(config, seed=0)
    tb.set_data(toy_data(config))
    index, z_d, z_g, extras = draw_chunk(np.random.default_rng(0), config, 256, 2)
    calls = []
    upload = TorchBackend._upload

    def spy(self, *arrays):
        calls.append([a.shape for a in arrays])
        return upload(self, *arrays)

    monkeypatch.setattr(TorchBackend, "_upload", spy)
    tb.train_rounds(index, z_d, z_g, **extras)
    assert calls == [[index.shape, z_d.shape, z_g.shape, *(extras[k].shape for k in
                                                           ("noise_real", "noise_fake", "noise_g", "mix"))]]
    with pytest.raises(ValueError, match="needs mix"):
        tb.train_rounds(index, z_d, z_g, **{k: v for k, v in extras.items() if k != "mix"})


# ----- torch.compile -----

@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_training_with_a_penalty_matches_eager_and_the_reference():
    """The objectives are compiled; the penalty's double backward runs eagerly beside them (~1 minute)."""
    config = remedy_config("roth", "nonsaturating", anneal=3)
    ref, eager = backends_pair(config, seed=5)
    _, compiled = backends_pair(config, seed=5, compile=True)
    assert compiled.compile
    m_eager = train_and_compare(config, ref, eager, seed=5, chunks=(1, 2))
    ref2, _ = backends_pair(config, seed=5)
    m_comp = train_and_compare(config, ref2, compiled, seed=5, chunks=(1, 2))
    for a, b in zip(m_eager, m_comp, strict=True):
        metrics_close(a, b, 1e-10)
    x, z, options = step_queries(config)
    (l1, g1), (l2, g2) = eager.d_grads(x, z, **options), compiled.d_grads(x, z, **options)
    assert l2 == pytest.approx(l1, rel=1e-12) and max_rel_diff(g1, g2) < 1e-10


# ----- the CLI -----

def _final(run: Path) -> checkpoint.Checkpoint:
    return checkpoint.load(checkpoint.resolve(run))


def _cli_train(backend, out, steps, *extra):
    from backends.cli import main
    return main(backend, ["train", "--out", str(out), "--steps", str(steps), "--hidden", "6", "--batch-size", "8",
                          "--train-size", "300", "--no-progress", "--log-every", "1", "--device", "cpu", *extra])


def test_cli_trains_with_r1_and_instance_noise_like_the_reference(tmp_path):
    options = ["--penalty", "r1", "--instance-noise", "0.1"]
    assert _cli_train("torch", tmp_path / "torch", 5, *options) == 0
    assert _cli_train("reference", tmp_path / "ref", 5, *options) == 0
    records = [json.loads(line) for line in (tmp_path / "torch" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5] and all(r["d_penalty"] > 0 for r in records)
    ref_records = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(ref_records, records, strict=True):
        assert b["d_penalty"] == pytest.approx(a["d_penalty"], rel=1e-9, abs=1e-12)
    a, b = _final(tmp_path / "ref"), _final(tmp_path / "torch")
    written = json.loads((tmp_path / "torch" / "config.json").read_text())["train_config"]
    assert written["penalty"] == {"kind": "r1", "weight": 1.0} and written["instance_noise"] == 0.1
    for name in a.params:
        np.testing.assert_allclose(b.params[name], a.params[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("options", [["--penalty", "r1", "--instance-noise", "0.1", "--instance-noise-anneal", "4"],
                                     ["--loss", "wasserstein", "--penalty", "wgan-gp", "--instance-noise", "0.2"]])
def test_cli_resume_with_remedies_is_bit_for_bit(tmp_path, options):
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

DDP_CASES = {"r1": ("r1", "nonsaturating"), "roth": ("roth", "minimax"), "wgan-gp": ("wgan-gp", "wasserstein")}
DDP_SEED = 11


def ddp_run(backend, config) -> list[dict]:
    """2 rounds through train_step, then 2 through train_rounds, on the trainer's global draws."""
    data = toy_data(config)
    rng = np.random.default_rng([DDP_SEED, 2])
    backend.init(DDP_SEED)
    index, z_d, z_g, extras = draw_chunk(rng, config, len(data), 4)
    metrics = [backend.train_step(train.StepInputs(data[index[r]], z_d[r], z_g[r],
                                                   **{k: v[r] for k, v in extras.items()})) for r in range(2)]
    backend.set_data(data)
    metrics += backend.train_rounds(index[2:], z_d[2:], z_g[2:], **{k: v[2:] for k, v in extras.items()})
    return [m.to_dict() for m in metrics]


def ddp_config(name):
    return remedy_config(*DDP_CASES[name], anneal=3, batch_size=8)


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_remedies")
    torchrun([__file__, str(out)], out)
    return out


@pytest.mark.parametrize("name", list(DDP_CASES))
def test_ddp_with_penalties_and_noise_matches_one_process(ddp_results, name):
    config = ddp_config(name)
    single = TorchBackend(config, device="cpu")
    expected_metrics = ddp_run(single, config)
    expected = single.export_params()
    assert all(m["d_penalty"] > 0 for m in expected_metrics)  # a global batch mean, like the losses
    assert len(expected_metrics) == 4
    assert_ranks_match(ddp_results, name, expected, expected_metrics)


def _ddp_worker(out: Path) -> None:
    save_rank_results(out, DDP_CASES, ddp_config, ddp_run)


if __name__ == "__main__":
    _ddp_worker(Path(sys.argv[1]))
