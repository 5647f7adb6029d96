"""ganspec's CuPy backend: the GAN hand-written again on CuPy arrays, with fused elementwise kernels.

Runs on an NVIDIA GPU through CuPy, or on the CPU through NumPy with the same code. See docs/cupy.md.

    backend.py   CupyBackend (the Backend interface), device selection, the forward/backward passes
    kernels.py   the fused kernels (cupy.fuse): bias+activation, activation gradients, losses, optimizers,
                 instance noise and the gradient penalties' pieces
    __main__.py  python -m backends.cupy: the shared CLI (backends/cli.py) on this backend
"""

from .backend import CupyBackend, cuda_status, resolve_device

__all__ = ["CupyBackend", "cuda_status", "resolve_device"]
