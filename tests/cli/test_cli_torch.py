"""The shared CLI with the torch backend: resume bit for bit, and checkpoints shared with the reference."""

import numpy as np
import pytest

from backends.cli import load_for_inference, main

from .conftest import assert_same_state, final_state, train

pytest.importorskip("torch")
try:
    import backends.torch.backend  # noqa: F401
except ImportError as e:  # the torch backend is written in parallel; skip until it imports
    pytest.skip(f"backends.torch is not importable: {e}", allow_module_level=True)


def test_torch_resume_is_bit_for_bit_on_cpu(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train(whole, 8, "--device", "cpu", backend="torch") == 0
    assert train(split, 4, "--device", "cpu", backend="torch") == 0
    assert main("torch", ["train", "--resume", str(split), "--steps", "8", "--no-progress"]) == 0
    assert_same_state(final_state(whole), final_state(split))
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert main("torch", ["sample", "--checkpoint", str(whole), "-n", "32", "--out", str(a)]) == 0
    assert main("torch", ["sample", "--checkpoint", str(split), "-n", "32", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_torch_and_reference_share_runs_and_checkpoints(tmp_path):
    ref, tor = tmp_path / "ref", tmp_path / "torch"
    assert train(ref, 5, "--dataset", "grid") == 0
    assert train(tor, 5, "--dataset", "grid", "--device", "cpu", backend="torch") == 0
    a, b = final_state(ref), final_state(tor)
    assert a.rng_state == b.rng_state  # the same host-side draws went to both backends
    for name in a.params:  # float64 on the CPU: the same training to rounding error
        np.testing.assert_allclose(b.params[name], a.params[name], rtol=1e-9, atol=1e-12, err_msg=name)
    # the reference samples a torch checkpoint, and continues the torch run
    _, ref_backend = load_for_inference("reference", str(tor), "float64", None)
    _, torch_backend = load_for_inference("torch", str(tor), "float64", "cpu")
    z = np.random.default_rng(0).standard_normal((16, 2))
    np.testing.assert_allclose(ref_backend.generate(z), torch_backend.generate(z), rtol=1e-12, atol=1e-12)
    assert main("reference", ["train", "--resume", str(tor), "--steps", "7", "--no-progress"]) == 0
    ck = final_state(tor)
    assert ck.step == 7 and ck.meta["backend"]["name"] == "reference"
