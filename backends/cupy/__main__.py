"""python -m backends.cupy: the shared ganspec CLI, training with the CuPy backend."""

from backends.cli import main

if __name__ == "__main__":
    main("cupy")
