"""`python -m backends.torch ...`: the shared ganspec CLI running on the torch backend."""

from backends.cli import main

if __name__ == "__main__":
    main("torch")
