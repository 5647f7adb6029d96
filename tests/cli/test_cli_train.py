"""End-to-end `train`, `sample` and `eval` with the reference backend at tiny sizes."""

import json

import numpy as np
import pytest

from backends.cli import main, run_eval
from backends.run import checkpoint, config, datasets, metrics_log
from reference import data as toy_data
from reference import metrics, recipes
from reference.train import train as reference_train

from .conftest import MNIST_DIR, final_state, tiny_args, train

DATASETS = ["gaussian1d", "ring", "grid", "swissroll", "digits"]


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wasserstein"])
@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_and_loss_writes_a_complete_run_folder(tmp_path, dataset, loss, capsys):
    run = tmp_path / "run"
    assert train(run, 3, "--dataset", dataset, "--loss", loss) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["options"]["dataset"] == dataset and saved["options"]["loss"] == loss
    assert saved["train_config"]["spec"]["loss"] == loss
    dim = {"gaussian1d": 1, "digits": 64}.get(dataset, 2)
    assert saved["dataset"]["dim"] == dim
    if loss == "wasserstein":  # the recipe's WGAN: RMSprop, k = 5, clipping 0.01
        assert saved["train_config"]["d_steps"] == 5 and saved["train_config"]["clip_value"] == 0.01
        assert saved["train_config"]["d_optimizer"]["name"] == "rmsprop"
    records = metrics_log.read(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert set(r) == set(metrics_log.FIELDS)
        if loss == "wasserstein":
            assert np.isnan(r["d_acc_real"]) and np.isfinite(r["critic_gap"])
        else:
            assert 0 <= r["d_acc_real"] <= 1 and np.isnan(r["critic_gap"])
    assert (run / "samples" / "step_000003.png").stat().st_size > 1000
    assert (run / "losses.png").stat().st_size > 1000
    ck = final_state(run)
    assert ck.step == 3 and ck.path.name == "step_000003.safetensors"
    assert json.loads((run / "checkpoints" / "latest.json").read_text()) == {"step": 3,
                                                                            "file": "step_000003.safetensors"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["final"]["step"] == 3
    assert ("mode_metrics" in summary["eval"]) == (dataset in ("ring", "grid"))
    if dataset == "gaussian1d":
        assert summary["eval"]["wasserstein1"] >= 0


def test_the_cli_computes_exactly_what_reference_train_computes(tmp_path):
    """The trainer's host-side draws (one Generator, chunks of rounds) replay reference.train.train bit for bit."""
    run = tmp_path / "run"
    assert train(run, 23, "--dataset", "grid", "--seed", "5", "--checkpoint-every", "7", "--log-every", "4") == 0
    ck = final_state(run)
    opts = json.loads((run / "config.json").read_text())["options"]
    data, _ = datasets.load("grid", seed=5, train_size=300)
    expected = reference_train(config.train_config(opts, 2), data, 23, seed=5)
    for name, value in expected.params.items():
        np.testing.assert_array_equal(ck.params[name], value, err_msg=name)
    for name, value in expected.d_opt_state.items():
        np.testing.assert_array_equal(ck.d_opt_state[name], value, err_msg=name)
    assert [r["step"] for r in metrics_log.read(run / "metrics.jsonl")] == [4, 8, 12, 16, 20, 23]
    assert [s for s, _ in checkpoint.list_checkpoints(run / "checkpoints")] == [7, 14, 21, 23]


def test_defaults_come_from_the_recipe(in_tmp, capsys):
    """No options but a short length: the non-saturating GAN on ring, with the recipe's networks and optimizers."""
    assert main("reference", ["train", "--steps", "2", "--train-size", "100"]) == 0
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any("2/2" in line and "round/s" in line and "D=" in line and "acc=" in line for line in bar), bar
    (run,) = (in_tmp / "runs").iterdir()
    assert run.name.startswith("ring-nonsaturating-")
    saved = json.loads((run / "config.json").read_text())
    expected = recipes.default_config("ring", 2, "nonsaturating")
    assert saved["train_config"] == expected.to_dict()
    assert saved["options"]["steps"] == 2 and saved["options"]["seed"] == 0
    opts = config.resolve({})
    assert opts["steps"] == recipes.default_steps("ring")


def test_mode_metrics_in_summary_match_eval_and_a_direct_computation(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, 4, "--dataset", "ring") == 0
    printed = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert "modes captured" in printed
    result = run_eval("reference", str(run))
    assert result["mode_metrics"] == summary["eval"]["mode_metrics"]
    # the same figure by hand: 2,500 samples with z from the documented stream [seed, 5]
    from backends.cli import load_for_inference

    _, backend = load_for_inference("reference", str(run), "float64", None)
    z = np.random.default_rng([0, 5]).standard_normal((2500, 2))
    ring = toy_data.get_dataset("ring")
    assert metrics.mode_metrics(backend.generate(z), ring.modes, ring.sigma).to_dict() == result["mode_metrics"]
    assert main("reference", ["eval", "--checkpoint", str(run), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["mode_metrics"] == result["mode_metrics"]


def test_sample_is_deterministic_and_matches_the_generator(tmp_path):
    run = tmp_path / "run"
    assert train(run, 3, "--dataset", "swissroll") == 0
    a, b, c = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "c.npy"
    assert main("reference", ["sample", "--checkpoint", str(run), "-n", "50", "--out", str(a), "--seed", "3"]) == 0
    ck_file = checkpoint.resolve(run)
    assert main("reference", ["sample", "--checkpoint", str(ck_file), "-n", "50", "--out", str(b), "--seed", "3"]) == 0
    assert main("reference", ["sample", "--checkpoint", str(run), "-n", "50", "--out", str(c), "--seed", "4"]) == 0
    xa, xb, xc = np.load(a), np.load(b), np.load(c)
    assert xa.shape == (50, 2) and xa.dtype == np.float64
    np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(xa, xc)
    from backends.cli import load_for_inference

    _, backend = load_for_inference("reference", str(run), "float64", None)
    np.testing.assert_array_equal(xa, backend.generate(np.random.default_rng(3).standard_normal((50, 2))))
    # an existing file is not overwritten without --force
    assert main("reference", ["sample", "--checkpoint", str(run), "-n", "5", "--out", str(a)]) == 1
    np.testing.assert_array_equal(np.load(a), xa)
    assert main("reference", ["sample", "--checkpoint", str(run), "-n", "5", "--out", str(a), "--force"]) == 0
    assert np.load(a).shape == (5, 2)
    png = tmp_path / "s.png"
    assert main("reference", ["sample", "--checkpoint", str(run), "-n", "200", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main("reference", ["sample", "--checkpoint", str(run), "-n", "5", "--out", str(tmp_path / "x.txt")]) == 1


def test_toml_config_and_flag_precedence(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('dataset = "grid"\nloss = "minimax"\nbatch-size = 16\nhidden = [6, 5]\nd_lr = 0.002\n'
                   'steps = 2\nseed = 9\n')
    run = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--out", str(run), "--loss", "wasserstein", "--no-progress",
            "--train-size", "100", "--clip", "0.5"]
    assert main("reference", args) == 0
    saved = json.loads((run / "config.json").read_text())
    opts, tc = saved["options"], saved["train_config"]
    assert opts["dataset"] == "grid" and opts["seed"] == 9 and opts["steps"] == 2  # from the file
    assert opts["loss"] == "wasserstein" and tc["spec"]["loss"] == "wasserstein"  # the flag wins
    assert tc["batch_size"] == 16 and tc["spec"]["generator"]["hidden_sizes"] == [6, 5]
    assert tc["d_optimizer"] == {**tc["d_optimizer"], "name": "rmsprop", "lr": 0.002}
    assert tc["g_optimizer"]["lr"] == 5e-5 and tc["clip_value"] == 0.5


@pytest.mark.parametrize(("text", "needle"), [
    ("stepz = 3\n", "'stepz'"),
    ("steps = \"many\"\n", "'steps' must be an integer"),
    ("hidden = [4, \"x\"]\n", "'hidden'"),
    ("loss = \"hinge\"\n", "'loss' is 'hinge'; choose one of minimax, nonsaturating, wasserstein"),
    ("compile = 1\n", "'compile' must be true or false"),
    ("steps = 3\nsteps-x = 1\n", "'steps_x'"),
    ("[train]\nsteps = 3\n", "'train'"),
    ("resume = \"x\"\n", "'resume' can only be given on the command line"),
    ("steps = 3\nsteps = 4\n", "not valid TOML"),
])
def test_bad_toml_names_the_key(tmp_path, capsys, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    assert main("reference", ["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert needle in err and str(cfg) in err
    assert not (tmp_path / "run").exists()


def test_bad_flags_are_usage_errors_listing_the_choices(tmp_path, capsys):
    assert main("reference", ["train", "--loss", "hinge"]) == 2
    assert "choose from 'minimax', 'nonsaturating', 'wasserstein'" in capsys.readouterr().err
    assert main("reference", ["train", "--dataset", "cifar"]) == 2
    assert "mnist" in capsys.readouterr().err
    assert main("reference", ["train", "--steps", "0", "--out", str(tmp_path / "r")]) == 1
    assert "'steps' must be positive" in capsys.readouterr().err
    assert main("reference", ["train", "--g-lr", "-1", "--out", str(tmp_path / "r")]) == 1
    assert "lr must be positive" in capsys.readouterr().err
    assert main("reference", ["train", "--device", "cuda", "--out", str(tmp_path / "r"), "--steps", "1"]) == 1
    assert "CPU only" in capsys.readouterr().err
    assert main("reference", ["frobnicate"]) == 2
    assert main("reference", ["train", "--dataset", "mnist", "--out", str(tmp_path / "r")]) == 1
    assert "--data-dir" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_float32_and_unsupported_backend_options(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, 3, "--dtype", "float32") == 0
    ck = final_state(run)
    assert ck.meta["backend"]["dtype"] == "float32"
    assert all(np.array_equal(v, v.astype(np.float32)) for v in ck.params.values())  # float32 values, stored as f64
    assert train(tmp_path / "c", 1, "--compile") == 1
    assert "does not support --compile" in capsys.readouterr().err


def test_an_existing_run_folder_is_never_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    assert train(run, 2) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert train(run, 3) == 1
    assert "already exists and is not empty" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(empty, 1) == 0  # an empty folder is fine


def test_mnist_from_the_shared_idx_files(tmp_path):
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no MNIST files in {MNIST_DIR}")
    data = datasets.load_mnist_images(MNIST_DIR)
    assert data.shape == (60000, 784) and data.min() == -1.0 and data.max() == 1.0
    run = tmp_path / "run"
    assert main("reference", tiny_args(run, 2, "--dataset", "mnist", "--data-dir", MNIST_DIR, "--z-size", "4")) == 0
    assert final_state(run).config.spec.data_size == 784
    out = tmp_path / "grid.png"
    assert main("reference", ["sample", "--checkpoint", str(run), "-n", "16", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_digits_are_scaled_to_minus_one_one():
    data, info = datasets.load("digits")
    assert data.shape == (1797, 64) and info.image_shape == (8, 8)
    assert data.min() == -1.0 and data.max() == 1.0
