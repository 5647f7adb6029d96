"""Checkpoints: safetensors files holding a whole training state in the interchange format.

A checkpoint is backend-independent: parameters and optimizer states are float64 arrays named as in
reference/mlp.py and reference/optim.py, so any backend can load what any other wrote. Tensors:

    params/{name}          "params/G.0.weight" (n_in, n_out), "params/G.0.bias" (n_out,), ..., "params/D.*"
    d_opt/{name}           D's optimizer state: "d_opt/step" (0-d), "d_opt/D.0.weight.exp_avg", ...
    g_opt/{name}           G's optimizer state

The safetensors metadata (str -> str) holds:

    format           "ganspec-checkpoint"
    format_version   "1"
    step             completed rounds, e.g. "500"
    backend          the backend that wrote it, with "dtype" and "device"
    config           JSON of reference.train.TrainConfig.to_dict(): the GAN spec, optimizers, k, m, clipping
    options          JSON of the run's resolved options (backends/run/config.py)
    dataset          JSON of the training set's DataInfo (name, dim, size, sha256 of the data)
    rng              JSON of the trainer's numpy bit generator state after `step` rounds
    tensors_sha256   SHA-256 over every tensor (sorted by name: name, dtype, shape, bytes)

Loading never unpickles anything; every check failure raises CheckpointError naming the file and problem.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy

from reference import gan, optim
from reference.train import TrainConfig

from .files import TMP_PREFIX, atomic_write_bytes, atomic_write_json

FORMAT, FORMAT_VERSION = "ganspec-checkpoint", "1"
FILE_PATTERN = re.compile(r"^step_(\d+)\.safetensors$")
LATEST = "latest.json"
JSON_KEYS = ("backend", "config", "options", "dataset", "rng")


class CheckpointError(ValueError):
    """A missing, truncated, tampered or mismatching checkpoint."""


@dataclass
class Checkpoint:
    path: Path
    step: int
    config: TrainConfig
    params: dict[str, np.ndarray]
    d_opt_state: dict[str, np.ndarray]
    g_opt_state: dict[str, np.ndarray]
    meta: dict  # the metadata, JSON values parsed

    @property
    def options(self) -> dict:
        return self.meta["options"]

    @property
    def rng_state(self) -> dict:
        return self.meta["rng"]


def file_name(step: int) -> str:
    return f"step_{step:06d}.safetensors"


def tensors_digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = np.array(tensors[name], order="C")
        h.update(f"{name}|{t.dtype.str}|{t.shape}|".encode())
        h.update(t.tobytes())
    return h.hexdigest()


def save(folder: str | Path, *, step: int, config: TrainConfig, params: dict, d_opt_state: dict, g_opt_state: dict,
         backend: dict, options: dict, dataset: dict, rng_state: dict) -> Path:
    """Write checkpoints/step_XXXXXX.safetensors atomically, then the `latest.json` pointer. Returns the path.

    Refuses (CheckpointError) to write a state containing NaN or Inf.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for prefix, group in (("params", params), ("d_opt", d_opt_state), ("g_opt", g_opt_state)):
        for name, value in group.items():
            array = np.array(value, dtype=np.float64, order="C")  # (ascontiguousarray would make 0-d 1-d)
            if not np.all(np.isfinite(array)):
                raise CheckpointError(f"refusing to checkpoint round {step}: {prefix}/{name} contains NaN or Inf")
            tensors[f"{prefix}/{name}"] = array
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": str(int(step)),
                "tensors_sha256": tensors_digest(tensors)}
    for key, value in zip(JSON_KEYS, (backend, config.to_dict(), options, dataset, rng_state), strict=True):
        metadata[key] = json.dumps(value)
    path = folder / file_name(step)
    atomic_write_bytes(path, safetensors.numpy.save(tensors, metadata=metadata))
    atomic_write_json(folder / LATEST, {"step": int(step), "file": path.name})
    return path


def _header_metadata(raw: bytes) -> dict:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]).get("__metadata__") or {}


def load(path: str | Path, expected_config: TrainConfig | None = None) -> Checkpoint:
    """Read and fully check one checkpoint file. With expected_config, also require the same GAN and training
    configuration (a run's checkpoints must match its config.json)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    try:
        tensors = safetensors.numpy.load(raw)
        meta = _header_metadata(raw)
    except (safetensors.SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file (truncated or damaged?): {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ganspec checkpoint (metadata 'format' is {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {meta.get('format_version')!r}; "
                              f"this program reads version {FORMAT_VERSION!r}")
    parsed = {}
    for key in (*JSON_KEYS, "step", "tensors_sha256"):
        if key not in meta:
            raise CheckpointError(f"{path}: metadata entry {key!r} is missing")
        try:
            parsed[key] = json.loads(meta[key]) if key in JSON_KEYS else meta[key]
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: metadata entry {key!r} is not valid JSON: {e}") from None
    try:
        step = int(parsed["step"])
        config = TrainConfig.from_dict(parsed["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata 'step'/'config' is invalid: {e!r}") from None
    if expected_config is not None and config.to_dict() != expected_config.to_dict():
        raise CheckpointError(f"{path} was trained with a different model or training configuration:\n"
                              f"  checkpoint: {json.dumps(config.to_dict())}\n"
                              f"  expected:   {json.dumps(expected_config.to_dict())}")
    params_shapes = config.spec.param_shapes()
    expected = {f"params/{n}": s for n, s in params_shapes.items()}
    for prefix, opt, net in (("d_opt", config.d_optimizer, "D"), ("g_opt", config.g_optimizer, "G")):
        names = [n for n in params_shapes if n.startswith(net + ".")]
        for state_name in optim.state_names(opt, names):
            expected[f"{prefix}/{state_name}"] = () if state_name == "step" else params_shapes[
                state_name.rsplit(".", 1)[0]]
    missing, extra = expected.keys() - tensors.keys(), tensors.keys() - expected.keys()
    if missing or extra:
        raise CheckpointError(f"{path}: tensors do not match the model spec: missing {sorted(missing)}, "
                              f"unexpected {sorted(extra)}")
    for name, shape in expected.items():
        t = tensors[name]
        if t.dtype != np.float64:
            raise CheckpointError(f"{path}: tensor {name} has dtype {t.dtype}, expected float64")
        if t.shape != tuple(shape):
            raise CheckpointError(f"{path}: tensor {name} has shape {t.shape}, expected {tuple(shape)}")
        if not np.all(np.isfinite(t)):
            raise CheckpointError(f"{path}: tensor {name} contains NaN or Inf")
    if tensors_digest(tensors) != parsed["tensors_sha256"]:
        raise CheckpointError(f"{path}: tensor data does not match its SHA-256 checksum (the file was altered)")

    def group(prefix, names):
        return {n: tensors[f"{prefix}/{n}"] for n in names}

    d_names = optim.state_names(config.d_optimizer, [n for n in params_shapes if n.startswith("D.")])
    g_names = optim.state_names(config.g_optimizer, [n for n in params_shapes if n.startswith("G.")])
    params = group("params", params_shapes)
    gan.check_params(config.spec, params)
    return Checkpoint(path, step, config, params, group("d_opt", d_names), group("g_opt", g_names), parsed)


def checkpoint_folder(run: Path) -> Path:
    return run / "checkpoints"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint file in folder, oldest first; temporary files are skipped."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = FILE_PATTERN.match(p.name)
        if m and not p.name.startswith(TMP_PREFIX) and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def find_latest(path: str | Path) -> Path | None:
    """The newest checkpoint of a run folder (or of a checkpoints folder); a file is returned as it is.

    Files are written atomically, so every file named step_XXXXXX.safetensors is complete: the newest is
    the one with the highest step. The latest.json pointer is written after each checkpoint for people
    and tools; the scan does not depend on it (a kill between the two writes leaves it one behind).
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path} is neither a checkpoint file nor a run folder")
    for folder in (checkpoint_folder(path), path):
        found = list_checkpoints(folder)
        if found:
            return found[-1][1]
    return None


def resolve(path: str | Path) -> Path:
    """Like find_latest, but an error when there is no checkpoint."""
    found = find_latest(path)
    if found is None:
        raise CheckpointError(f"no checkpoint in {path} "
                              f"(expected {Path(path) / 'checkpoints'}/step_XXXXXX.safetensors)")
    return found
