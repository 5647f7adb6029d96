"""Tests of the JAX backend (issue 5): conformance with the reference, training programs, devices, CLI."""
