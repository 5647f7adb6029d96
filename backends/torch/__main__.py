"""`python -m backends.torch train|sample|eval ...`: the shared ganspec CLI running the torch backend.

Under torchrun (`torchrun --nproc_per_node=N -m backends.torch train ...`) the backend trains data-parallel.
"""

import sys

from backends.cli import main

if __name__ == "__main__":
    sys.exit(main("torch"))
