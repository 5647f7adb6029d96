"""The shared CLI with --conditional, instance noise and penalties, on the reference backend: the run equals
reference.train.train with the same seed, resume is bit for bit, and bad combinations are refused by name."""

import numpy as np
import pytest

from backends.cli import main
from backends.run import config, datasets, trainer
from reference import train as reference_train

from .conftest import assert_same_state, final_state, train


def test_labelled_datasets_are_the_same_data_with_their_classes():
    for name, k in datasets.NUM_CLASSES.items():
        if name == "mnist":
            continue
        data, labels, info = datasets.load_labelled(name, seed=3, train_size=500)
        plain, plain_info = datasets.load(name, seed=3, train_size=500)
        np.testing.assert_array_equal(data, plain)
        assert info == plain_info and labels.shape == (len(data),) and labels.dtype == np.int64
        assert set(np.unique(labels)) <= set(range(k))
    ring, labels, _ = datasets.load_labelled("ring", seed=0, train_size=200)
    modes = datasets.toy_data.get_dataset("ring").modes
    assert np.all(np.linalg.norm(ring - modes[labels], axis=1) < 0.06)  # each sample next to its class's mode
    assert datasets.load_labelled("swissroll", train_size=10)[1] is None


def test_draw_chunk_draws_what_draw_inputs_draws_round_by_round():
    opts = config.resolve({"dataset": "ring", "conditional": True, "instance_noise": 0.1, "batch_size": 4,
                           "d_steps": 2, "hidden": [4]})
    cfg = config.train_config(opts, 2)
    data, labels, _ = datasets.load_labelled("ring", train_size=50)
    index, z_d, z_g, extras = trainer.draw_chunk(np.random.default_rng(7), cfg, len(data), 3)
    rng = np.random.default_rng(7)
    for r in range(3):
        inputs = reference_train.draw_inputs(cfg, data, rng, labels)
        np.testing.assert_array_equal(inputs.real, data[index[r]])
        np.testing.assert_array_equal(inputs.labels_real, labels[index[r]])
        np.testing.assert_array_equal(inputs.z_d, z_d[r])
        np.testing.assert_array_equal(inputs.z_g, z_g[r])
        for name in ("noise_real", "noise_fake", "noise_g", "labels_fake", "labels_g"):
            np.testing.assert_array_equal(getattr(inputs, name), extras[name][r], err_msg=name)


@pytest.mark.parametrize("extra", [("--conditional",), ("--conditional", "--instance-noise", "0.2"),
                                   ("--penalty", "roth", "--instance-noise", "0.1", "--instance-noise-anneal", "4"),
                                   ("--loss", "wasserstein", "--penalty", "wgan-gp")])
def test_a_cli_run_is_reference_train_and_resumes_bit_for_bit(tmp_path, extra):
    assert train(tmp_path / "full", 6, *extra) == 0
    full = final_state(tmp_path / "full")
    opts = config.resolve({"dataset": "ring", "hidden": [4], "batch_size": 8, "train_size": 300})
    data, labels, _ = datasets.load_labelled("ring", train_size=300)
    state = reference_train.train(full.config, data, 6, 0, labels=labels if full.config.needs_labels else None)
    assert opts["seed"] == 0
    for name, value in state.params.items():
        np.testing.assert_array_equal(full.params[name], value, err_msg=name)
    assert train(tmp_path / "half", 3, *extra) == 0
    assert main("reference", ["train", "--resume", str(tmp_path / "half"), "--steps", "6", "--no-progress"]) == 0
    assert_same_state(final_state(tmp_path / "half"), full)


@pytest.mark.parametrize("extra, message", [
    (("--conditional", "--dataset", "swissroll"), "needs a dataset with classes"),
    (("--conditional", "--penalty", "r1"), "not implemented yet"),
    (("--penalty-weight", "2"), "no --penalty"),
    (("--instance-noise-anneal", "10"), "--instance-noise is 0"),
    (("--penalty", "roth", "--loss", "wasserstein"), "needs a logit loss"),
    (("--instance-noise", "-1"), ">= 0")])
def test_bad_option_combinations_are_refused_by_name(tmp_path, capsys, extra, message):
    assert train(tmp_path / "run", 2, *extra) == 1  # the CLI's status for a bad option or file
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_eval_of_a_conditional_run_reports_the_requested_mode_share(tmp_path, capsys):
    assert train(tmp_path / "run", 4, "--conditional") == 0
    capsys.readouterr()
    assert main("reference", ["eval", "--checkpoint", str(tmp_path / "run")]) == 0
    assert "on the requested mode" in capsys.readouterr().out
