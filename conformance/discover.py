"""Finding the backends to check: registered names (backends.available(), entry points included) or
"module:Class". A backend that cannot be imported or cannot build a tiny GAN is skipped, with the reason."""

import importlib

from backends import available, load_backend
from backends.interface import Backend
from reference import gan, mlp
from reference.train import TrainConfig

_TINY = TrainConfig(gan.GANSpec(mlp.MLPSpec(2, (3,), 2), mlp.MLPSpec(2, (3,), 1)), batch_size=2)


def load(name: str):
    """The Backend class for a registered name or "module:Class" (ImportError/ValueError on failure)."""
    if ":" in name and name not in available():
        module, _, attr = name.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    else:
        cls = load_backend(name)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{name} is {cls!r}, not a backends.interface.Backend subclass")
    return cls


def probe(name: str):
    """(class, None) if the backend imports and can run a tiny GAN on this machine, else (None, reason)."""
    try:
        cls = load(name)
        backend = cls(_TINY, dtype="float64")
        backend.init(0)
        backend.generate(__import__("numpy").zeros((1, 2)))
    except Exception as exc:  # noqa: BLE001 - any reason a backend is unusable here is reported, not raised
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    return cls, None


def backends(names=None):
    """({name: class} usable here, {name: reason} skipped); default: every backend available() knows."""
    usable, skipped = {}, {}
    for name in names or list(available()):
        cls, reason = probe(name)
        if cls is None:
            skipped[name] = reason
        else:
            usable[name] = cls
    return usable, skipped
