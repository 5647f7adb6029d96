"""Training sets for the CLI, as float64 arrays of shape (N, dim).

    gaussian1d, ring, grid, swissroll   reference.data's distributions; a fixed training set of
                                        `train_size` samples (default 100,000) drawn from the stream
                                        np.random.default_rng([seed, 3])
    digits                              sklearn.datasets.load_digits: 1,797 8x8 images, pixels 0..16,
                                        scaled to [-1, 1]; dim 64
    mnist                               the training images of MNIST from IDX files (gzip-compressed or
                                        not) in a folder; pixels 0..255 scaled to [-1, 1]; dim 784

The IDX format (http://yann.lecun.com/exdb/mnist/): a big-endian header of two zero bytes, a type byte
(0x08: unsigned bytes), a byte with the number of dimensions, then one 32-bit big-endian size per
dimension, then the data. As a 32-bit number the first four bytes are the "magic": 2051 for images
(type 0x08, 3 dimensions) and 2049 for labels (type 0x08, 1 dimension).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reference import data as toy_data

SEED_STREAM = 3  # the synthetic training set comes from np.random.default_rng([seed, SEED_STREAM])

IMAGE_SHAPES = {"digits": (8, 8), "mnist": (28, 28)}


class DataError(ValueError):
    """A missing or malformed data file; the message names the file and what was expected."""


@dataclass(frozen=True)
class DataInfo:
    """What the rest of the program needs to know about a training set."""

    name: str
    dim: int
    size: int
    sha256: str  # of the float64 training array, to tell on resume that the data is the same
    image_shape: tuple[int, int] | None = None

    @property
    def toy(self) -> toy_data.Dataset | None:
        return toy_data.DATASETS.get(self.name)

    def to_dict(self) -> dict:
        return {"name": self.name, "dim": self.dim, "size": self.size, "sha256": self.sha256,
                "image_shape": list(self.image_shape) if self.image_shape else None}


def fingerprint(data: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(data, dtype=np.float64).tobytes()).hexdigest()


NUM_CLASSES = {"ring": 8, "grid": 25, "digits": 10, "mnist": 10}
"""The datasets with class labels (a conditional GAN's): the mixture component, or the digit."""


def load(name: str, *, seed: int = 0, train_size: int = 100_000, data_dir: str | Path | None = None):
    """(data (N, dim) float64, DataInfo) for a dataset name."""
    data, _, info = load_labelled(name, seed=seed, train_size=train_size, data_dir=data_dir)
    return data, info


def load_labelled(name: str, *, seed: int = 0, train_size: int = 100_000, data_dir: str | Path | None = None):
    """(data (N, dim) float64, labels (N,) int64 or None, DataInfo): the same data as `load`, with every row's
    class for the datasets that have classes (NUM_CLASSES)."""
    labels = None
    if name in toy_data.DATASETS:
        toy, rng = toy_data.get_dataset(name), np.random.default_rng([seed, SEED_STREAM])
        if toy.modes is not None:
            data, labels = toy.sample_labelled(train_size, rng)  # the same draws as sample()
        else:
            data = toy.sample(train_size, rng)
    elif name == "digits":
        data, labels = load_digits(with_labels=True)
    elif name == "mnist":
        if data_dir is None:
            raise DataError("the mnist dataset needs a data folder (--data-dir)")
        data, labels = load_mnist_images(data_dir, with_labels=True)
    else:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join([*toy_data.DATASETS, 'digits', 'mnist'])}")
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    return data, labels, DataInfo(name, data.shape[1], len(data), fingerprint(data), IMAGE_SHAPES.get(name))


def load_digits(with_labels: bool = False):
    from sklearn.datasets import load_digits as sklearn_digits  # ships its data: nothing is downloaded

    bunch = sklearn_digits()
    pixels = bunch.data / 8.0 - 1.0  # (1797, 64), integers 0..16 scaled to [-1, 1]
    return (pixels, bunch.target) if with_labels else pixels


# ----- MNIST IDX files -----

IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049
MNIST_TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def find_idx_file(folder: Path, stem: str) -> Path:
    """`stem` or `stem.gz` in folder (the names MNIST is distributed under; also `stem.idx3-ubyte`-style)."""
    candidates = [folder / stem, folder / (stem + ".gz"), folder / stem.replace("-idx", ".idx"),
                  folder / (stem.replace("-idx", ".idx") + ".gz")]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"MNIST file not found: expected {candidates[0]} or {candidates[1]}")


def read_idx_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (recognised by its magic bytes, not its name)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path} is a damaged gzip file ({e}); expected a gzip-compressed IDX file") from None
    return raw


def parse_idx(raw: bytes, path: Path, magic: int, ndim: int) -> np.ndarray:
    """Check an IDX header (magic number, type byte 0x08, dimensions, file size) and return the uint8 array."""
    if len(raw) < 4:
        raise DataError(f"{path} is too short ({len(raw)} bytes) to be an IDX file")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file: it must start with two zero bytes, found {raw[:2].hex()}")
    found_magic = int.from_bytes(raw[:4], "big")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX type byte is 0x{raw[2]:02x}, expected 0x08 (unsigned bytes)")
    if found_magic != magic:
        raise DataError(f"{path}: magic number is {found_magic}, expected {magic} "
                        f"({'images' if magic == IDX_IMAGES_MAGIC else 'labels'}, {ndim} dimensions)")
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} is too short ({len(raw)} bytes) for an IDX header with {ndim} dimensions")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    header = 4 + 4 * ndim
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path}: the header says {' x '.join(map(str, dims))} bytes of data, so the (decompressed) "
                        f"file should be {expected} bytes long, but it is {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist_images(data_dir: str | Path, with_labels: bool = False):
    """MNIST's 60,000 training images as (60000, 784) float64 in [-1, 1], checked against the label file
    (and, with_labels, the labels (60000,) too)."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"MNIST data folder {folder} does not exist")
    images_path = find_idx_file(folder, MNIST_TRAIN[0])
    labels_path = find_idx_file(folder, MNIST_TRAIN[1])
    images = parse_idx(read_idx_bytes(images_path), images_path, IDX_IMAGES_MAGIC, 3)
    labels = parse_idx(read_idx_bytes(labels_path), labels_path, IDX_LABELS_MAGIC, 1)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1]} x {images.shape[2]}, expected 28 x 28")
    if len(images) == 0:
        raise DataError(f"{images_path} holds no images")
    if len(labels) != len(images):
        raise DataError(f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images")
    if labels.max() > 9:
        raise DataError(f"{labels_path}: labels must be digits 0..9, found {labels.max()}")
    pixels = images.reshape(len(images), 784).astype(np.float64) / 127.5 - 1.0
    return (pixels, labels.astype(np.int64)) if with_labels else pixels
