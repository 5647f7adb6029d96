"""Tests of the CuPy backend (backends/cupy) on its NumPy path, and of its kernels' CUDA tracing."""
