"""Checkpoint and data files: tampering, truncation, atomic writes, IDX validation."""

import gzip
import json
import os
import pickle

import numpy as np
import pytest
import safetensors.numpy

from backends.cli import main
from backends.run import checkpoint, config, datasets, files
from reference import optim

from .conftest import final_state, tiny_args, train


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert train(run, 3) == 0
    return run


def rewrite(src, dst, *, tensors=None, metadata=None, drop=None, digest=True):
    """Copy a checkpoint with some tensors or metadata changed, recomputing the checksum unless told not to."""
    raw = src.read_bytes()
    t = dict(safetensors.numpy.load(raw))
    meta = checkpoint._header_metadata(raw)
    t.update(tensors or {})
    for name in drop or ():
        del t[name]
    meta.update(metadata or {})
    if digest:
        meta["tensors_sha256"] = checkpoint.tensors_digest(t)
    dst.write_bytes(safetensors.numpy.save(t, metadata=meta))
    return dst


def tampered(src, tmp_path):
    cases = {}
    raw = src.read_bytes()
    cases["truncated"] = (raw[: len(raw) // 2], "not a valid safetensors file")
    cases["empty"] = (b"", "not a valid safetensors file")
    cases["bad header"] = (b"\xff" * 8 + raw[8:], "not a valid safetensors file")
    flipped = bytearray(raw)
    flipped[-3] ^= 0x01
    cases["flipped data byte"] = (bytes(flipped), "SHA-256")
    out = {name: (tmp_path / f"{i}.safetensors", needle) for i, (name, (_, needle)) in enumerate(cases.items())}
    for name, (path, _) in out.items():
        path.write_bytes(cases[name][0])
    rw = {
        "format version": (dict(metadata={"format_version": "2"}), "format version '2'"),
        "not ganspec": (dict(metadata={"format": "other"}), "not a ganspec checkpoint"),
        "missing tensor": (dict(drop=["params/D.1.bias"]), "missing ['params/D.1.bias']"),
        "extra tensor": (dict(tensors={"params/X": np.zeros(2)}), "unexpected ['params/X']"),
        "wrong shape": (dict(tensors={"params/G.0.weight": np.zeros((2, 5))}), "params/G.0.weight has shape (2, 5)"),
        "wrong dtype": (dict(tensors={"d_opt/step": np.zeros((), np.float32)}), "dtype float32"),
        "nan": (dict(tensors={"params/G.0.bias": np.full(4, np.nan)}), "NaN or Inf"),
        "missing metadata": (dict(metadata={"rng": None}), "metadata"),
        "bad json": (dict(metadata={"config": "{"}), "'config' is not valid JSON"),
    }
    for name, (kw, needle) in rw.items():
        path = tmp_path / (name.replace(" ", "_") + ".safetensors")
        if name == "missing metadata":
            raw_t = dict(safetensors.numpy.load(src.read_bytes()))
            meta = {k: v for k, v in checkpoint._header_metadata(src.read_bytes()).items() if k != "rng"}
            path.write_bytes(safetensors.numpy.save(raw_t, metadata=meta))
        else:
            rewrite(src, path, **kw)
        out[name] = (path, needle)
    return out


def test_tampered_checkpoints_give_clear_errors_and_never_unpickle(good_run, tmp_path, monkeypatch, capsys):
    def no_pickle(*a, **k):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    src = checkpoint.resolve(good_run)
    checkpoint.load(src)  # the good one loads without pickle
    for name, (path, needle) in tampered(src, tmp_path).items():
        with pytest.raises(checkpoint.CheckpointError) as info:
            checkpoint.load(path)
        assert needle in str(info.value) and str(path) in str(info.value), name
        out = tmp_path / f"{name}.npy"
        assert main("reference", ["sample", "--checkpoint", str(path), "-n", "3", "--out", str(out)]) == 1, name
        assert needle in capsys.readouterr().err
        assert not out.exists()


def test_a_checkpoint_of_another_model_is_refused(good_run, tmp_path):
    ck = final_state(good_run)
    other = config.train_config({**ck.options, "hidden": [5]}, 2)
    with pytest.raises(checkpoint.CheckpointError, match="different model or training configuration"):
        checkpoint.load(ck.path, expected_config=other)
    # resuming a run whose newest checkpoint belongs to another model: an error, the run is untouched
    run = tmp_path / "run"
    assert train(run, 2) == 0
    foreign = tmp_path / "foreign"
    assert train(foreign, 3, hidden=5) == 0
    (run / "checkpoints" / "step_000003.safetensors").write_bytes(checkpoint.resolve(foreign).read_bytes())
    assert main("reference", ["train", "--resume", str(run), "--steps", "5"]) == 1


def test_atomic_write_keeps_the_old_file_when_the_writer_dies(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    files.atomic_write_json(target, {"v": 1})

    def dies(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", dies)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_the_newest_complete_checkpoint_is_found(good_run, tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    src = checkpoint.resolve(good_run)
    for step in (2, 10, 9):
        (folder / checkpoint.file_name(step)).write_bytes(src.read_bytes())
    (folder / ".tmp-step_000011.safetensors.x").write_bytes(b"partial")
    (folder / "latest.json").write_text('{"step": 9, "file": "step_000009.safetensors"}')  # one behind
    assert checkpoint.find_latest(tmp_path / "run") == folder / "step_000010.safetensors"
    assert checkpoint.find_latest(folder) == folder / "step_000010.safetensors"
    assert checkpoint.find_latest(tmp_path) is None
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.resolve(tmp_path)


def test_checkpoint_round_trip_in_interchange_format(good_run):
    ck = final_state(good_run)
    assert list(ck.params) == list(ck.config.spec.param_shapes())
    assert list(ck.d_opt_state) == optim.state_names(ck.config.d_optimizer, [n for n in ck.params if n[0] == "D"])
    assert ck.d_opt_state["step"].shape == () and float(ck.d_opt_state["step"]) == 3.0
    assert ck.meta["backend"]["name"] == "reference" and ck.meta["dataset"]["name"] == "ring"
    assert ck.rng_state["bit_generator"] == "PCG64"
    with pytest.raises(checkpoint.CheckpointError, match="refusing to checkpoint round 3"):
        checkpoint.save(good_run / "x", step=3, config=ck.config, params={**ck.params, "G.0.bias": np.full(4, np.inf)},
                        d_opt_state=ck.d_opt_state, g_opt_state=ck.g_opt_state, backend={}, options={}, dataset={},
                        rng_state={})
    assert not (good_run / "x").exists() or not list((good_run / "x").iterdir())


# ----- MNIST IDX files -----

def idx_bytes(magic, dims, payload):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + np.asarray(payload, np.uint8).tobytes()


def write_mnist(folder, n=5, *, images=None, labels=None, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = images if images is not None else idx_bytes(2051, (n, 28, 28), rng.integers(0, 256, n * 784))
    labels = labels if labels is not None else idx_bytes(2049, (n,), rng.integers(0, 10, n))
    for stem, raw in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return folder


def test_idx_files_load_gzipped_or_not(tmp_path):
    a = datasets.load_mnist_images(write_mnist(tmp_path / "gz"))
    b = datasets.load_mnist_images(write_mnist(tmp_path / "raw", gz=False))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (5, 784) and a.min() >= -1 and a.max() <= 1
    raw = (tmp_path / "raw" / "train-images-idx3-ubyte").read_bytes()
    np.testing.assert_array_equal(a, np.frombuffer(raw[16:], np.uint8).reshape(5, 784) / 127.5 - 1)


def test_training_on_a_small_mnist_folder(tmp_path):
    folder = write_mnist(tmp_path / "m", n=20)
    run = tmp_path / "run"
    assert main("reference", tiny_args(run, 2, "--dataset", "mnist", "--data-dir", folder, "--z-size", "3")) == 0
    assert (run / "samples" / "step_000002.png").exists()


def test_corrupt_idx_files_name_the_file_and_the_problem(tmp_path, capsys):
    pix = np.zeros(3 * 784, dtype=np.uint8)
    good_images = idx_bytes(2051, (3, 28, 28), pix)
    good_labels = idx_bytes(2049, (3,), [1, 2, 3])
    cases = {
        "labels magic in the images file": (dict(images=idx_bytes(2049, (3,), [1, 2, 3])), "images",
                                            "magic number is 2049, expected 2051"),
        "wrong type byte": (dict(images=b"\x00\x00\x0d\x03" + good_images[4:]), "images", "type byte is 0x0d"),
        "not idx": (dict(images=b"PK\x03\x04" + good_images[4:]), "images", "two zero bytes"),
        "wrong image size": (dict(images=idx_bytes(2051, (3, 27, 28), pix[: 3 * 27 * 28])), "images",
                             "27 x 28, expected 28 x 28"),
        "truncated": (dict(images=good_images[:-10]), "images", "should be 2368 bytes long, but it is 2358"),
        "trailing bytes": (dict(images=good_images + b"\x00"), "images", "but it is 2369"),
        "short header": (dict(images=good_images[:9]), "images", "too short"),
        "label count": (dict(images=good_images, labels=idx_bytes(2049, (2,), [1, 2])), "labels",
                        "has 2 labels but"),
        "bad label": (dict(images=good_images, labels=idx_bytes(2049, (3,), [1, 2, 12])), "labels", "found 12"),
    }
    for i, (name, (kw, which, needle)) in enumerate(cases.items()):
        folder = write_mnist(tmp_path / str(i), **{"labels": good_labels, **kw})
        with pytest.raises(datasets.DataError) as info:
            datasets.load_mnist_images(folder)
        msg = str(info.value)
        assert needle in msg and f"train-{which}-idx" in msg, (name, msg)
    # a damaged gzip stream and a missing file, through the CLI
    folder = write_mnist(tmp_path / "gzbad")
    gz = folder / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:40])
    out = tmp_path / "run"
    assert main("reference", tiny_args(out, 1, "--dataset", "mnist", "--data-dir", folder)) == 1
    assert f"{gz} is a damaged gzip file" in capsys.readouterr().err
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    gz.write_bytes(gzip.compress(good_images))
    assert main("reference", tiny_args(out, 1, "--dataset", "mnist", "--data-dir", folder)) == 1
    assert "MNIST file not found: expected" in capsys.readouterr().err
    assert main("reference", tiny_args(out, 1, "--dataset", "mnist", "--data-dir", tmp_path / "nothing")) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()
