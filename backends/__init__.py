"""ganspec's backends: one interface (interface.Backend), several frameworks.

Backends are found by name: the built-in ones below, plus any third-party package that declares an
entry point in the group "ganspec.backends" pointing at its Backend subclass, e.g. in its pyproject.toml:

    [project.entry-points."ganspec.backends"]
    mybackend = "mypackage.gan:MyBackend"
"""

import importlib
from importlib.metadata import entry_points

BUILTIN = {
    "reference": "backends.interface:ReferenceBackend",
    "torch": "backends.torch.backend:TorchBackend",
    "jax": "backends.jax.backend:JaxBackend",
    "cupy": "backends.cupy.backend:CupyBackend",
}
ENTRY_POINT_GROUP = "ganspec.backends"


def available() -> dict[str, str]:
    """name -> "module:Class" for every backend this installation knows of (not all may import)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def load_backend(name: str):
    """The Backend class registered under `name`. Raises ValueError for an unknown name and
    ImportError (with the reason) when the backend's framework is not installed."""
    known = available()
    if name not in known:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(known)}")
    module_name, _, class_name = known[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)
