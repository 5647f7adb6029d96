"""python -m backends.cupy: the shared ganspec CLI, training with the CuPy backend."""

import sys

from backends.cli import main

if __name__ == "__main__":
    sys.exit(main("cupy"))
