"""Activation functions, each with its derivative written next to it.

Every activation is an elementwise function f applied to the pre-activation h = x @ W + b.
Backpropagation needs f'(h): given the upstream gradient dL/dy with y = f(h), the chain rule gives

    dL/dh = dL/dy * f'(h)          (elementwise)

Some derivatives are easier to write in terms of the output y (sigmoid, tanh); we still take h as the
argument so that every activation has the same shape of code. The second derivative f''(h) is here
too: a gradient penalty differentiates the input-gradient of D once more, and that needs f''.

ReLU and LeakyReLU have no derivative at h = 0. We take the left-hand value there (relu'(0) = 0,
leaky_relu'(0) = slope), the same choice torch and JAX make, so every implementation agrees.
"""

import numbers
from dataclasses import dataclass

import numpy as np


def sigmoid(h):
    """sigma(h) = 1 / (1 + e^-h), computed so that e^(...) never overflows and tiny values stay accurate.

    For h >= 0 we use 1 / (1 + e^-h); for h < 0 the same value written as e^h / (1 + e^h).
    Either way the exponential is e^-|h|, which lies in (0, 1].
    """
    e = np.exp(-np.abs(h))  # e^-|h|, same shape as h
    return np.where(h >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity: its value, first and second derivatives, all taking h."""

    name: str
    slope: float = 0.0  # only used by leaky_relu: f(h) = h for h > 0, slope * h otherwise

    def forward(self, h):
        if self.name == "identity":
            return h  # f(h) = h
        if self.name == "relu":
            return np.maximum(h, 0.0)  # f(h) = max(h, 0)
        if self.name == "leaky_relu":
            return np.where(h > 0, h, self.slope * h)  # f(h) = h if h > 0 else slope * h
        if self.name == "tanh":
            return np.tanh(h)
        if self.name == "sigmoid":
            return sigmoid(h)
        raise ValueError(f"unknown activation {self.name!r}")

    def derivative(self, h):
        """f'(h), elementwise, same shape as h."""
        if self.name == "identity":
            return np.ones_like(h)  # d/dh h = 1
        if self.name == "relu":
            return (h > 0).astype(h.dtype)  # 1 where h > 0, else 0
        if self.name == "leaky_relu":
            return np.where(h > 0, 1.0, self.slope).astype(h.dtype)  # 1 where h > 0, else slope
        if self.name == "tanh":
            return 1.0 - np.tanh(h) ** 2  # d/dh tanh(h) = 1 - tanh(h)^2
        if self.name == "sigmoid":
            s = sigmoid(h)
            return s * (1.0 - s)  # d/dh sigma(h) = sigma(h) (1 - sigma(h))
        raise ValueError(f"unknown activation {self.name!r}")

    def second_derivative(self, h):
        """f''(h), elementwise. Piecewise-linear activations have f'' = 0 wherever it exists."""
        if self.name in ("identity", "relu", "leaky_relu"):
            return np.zeros_like(h)
        if self.name == "tanh":
            t = np.tanh(h)
            return -2.0 * t * (1.0 - t**2)  # d/dh (1 - t^2) = -2 t t'
        if self.name == "sigmoid":
            s = sigmoid(h)
            return s * (1.0 - s) * (1.0 - 2.0 * s)  # d/dh s(1-s) = s'(1-s) - s s' = s'(1 - 2s)
        raise ValueError(f"unknown activation {self.name!r}")

    def backward(self, grad_y, h):
        """dL/dh = dL/dy * f'(h), given the upstream gradient dL/dy."""
        return grad_y * self.derivative(h)


ACTIVATIONS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")


def get_activation(name: str, slope: float = 0.2) -> Activation:
    """Look an activation up by name; `slope` is LeakyReLU's negative-side slope."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    valid_number = isinstance(slope, numbers.Real) and not isinstance(slope, bool) and np.isfinite(slope)
    if name == "leaky_relu" and not (valid_number and 0.0 <= slope < 1.0):
        raise ValueError(f"leaky_relu slope must be in [0, 1), got {slope!r}")
    return Activation(name, slope if name == "leaky_relu" else 0.0)
