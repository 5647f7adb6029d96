"""The JAX backend of ganspec: `JaxBackend` (backend.py) on pure functions (nets.py) and optax (optimizers.py).

Train from the command line with `python -m backends.jax train` (the shared CLI, backends/cli.py).
"""

from .backend import JaxBackend

__all__ = ["JaxBackend"]
