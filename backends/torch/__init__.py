"""The PyTorch backend: `python -m backends.torch train ...` (the shared CLI), or TorchBackend in code.

Modules: backend (TorchBackend), nets (modules, losses, optimizers), convert (interchange format <-> torch,
the weight transpose), ddp (multi-process data parallel under torchrun).
"""

from .backend import TorchBackend

__all__ = ["TorchBackend"]
