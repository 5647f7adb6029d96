"""`python -m backends.jax train|sample|eval ...`: the shared ganspec CLI running the JAX backend."""

from backends.cli import main

if __name__ == "__main__":
    main("jax")
