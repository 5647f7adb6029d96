"""Tests of the NumPy reference (issue 2): per-area files, helpers in tests/helpers."""
