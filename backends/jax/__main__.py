"""`python -m backends.jax train|sample|eval ...`: the shared ganspec CLI running the JAX backend.

`--device cpu:all` (or gpu:all) trains data-parallel over every device of that platform; `--amp` computes
in bfloat16 with float32 master parameters.
"""

import sys

from backends.cli import main

if __name__ == "__main__":
    sys.exit(main("jax"))
