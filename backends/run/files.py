"""Crash-safe file writes: a file is either its old complete self or its new complete self, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".tmp-"  # temporary files are hidden and start with this; readers ignore them


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, os.replace it onto `path`, fsync the folder.

    os.replace is atomic on POSIX and Windows when both names are on one file system (same folder), so a
    kill -9 at any moment leaves either no file, the previous file, or the complete new one, plus at worst
    a stray temporary file that readers skip.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode())


def remove_stray_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files a killed writer left behind in `folder`; returns what was removed."""
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(TMP_PREFIX) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed
