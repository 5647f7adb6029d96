"""A multilayer perceptron with hand-written backpropagation.

An MLP is a stack of dense layers. Layer i computes

    h_i = x_i @ W_i + b_i          x_i: (B, n_in)  W_i: (n_in, n_out)  b_i: (n_out,)  h_i: (B, n_out)
    x_{i+1} = f_i(h_i)             f_i is the hidden activation, or the output activation for the last layer

Backward, given dL/dx_{i+1} from the layer above (the chain rule, one layer at a time):

    dL/dh_i = dL/dx_{i+1} * f_i'(h_i)         elementwise
    dL/dW_i = x_i^T @ dL/dh_i                 (n_in, B) @ (B, n_out) -> (n_in, n_out)
    dL/db_i = sum over the batch of dL/dh_i   (n_out,)
    dL/dx_i = dL/dh_i @ W_i^T                 (B, n_out) @ (n_out, n_in) -> (B, n_in)

Parameters live in a plain ordered dict, the interchange format every backend imports and exports:

    "{prefix}.{i}.weight"   shape (n_in, n_out), float64   (note: x @ W, so torch's Linear.weight is W^T)
    "{prefix}.{i}.bias"     shape (n_out,),      float64

with i = 0 for the layer that reads the input, in order. The generator uses prefix "G", the discriminator "D".
"""

from dataclasses import dataclass

import numpy as np

from .activations import ACTIVATIONS, get_activation


@dataclass(frozen=True)
class MLPSpec:
    """Everything that defines an MLP's shape: sizes and activations. Plain data, easy to save as JSON."""

    in_size: int
    hidden_sizes: tuple[int, ...]
    out_size: int
    hidden_activation: str = "relu"
    output_activation: str = "identity"
    leaky_slope: float = 0.2  # used only when an activation is "leaky_relu"

    def __post_init__(self):
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        for what, n in [("in_size", self.in_size), ("out_size", self.out_size)] + [
            (f"hidden_sizes[{i}]", n) for i, n in enumerate(self.hidden_sizes)
        ]:
            if isinstance(n, bool) or not isinstance(n, int | np.integer):
                raise TypeError(f"MLPSpec.{what} must be an int, got {type(n).__name__} {n!r}")
            if n <= 0:
                raise ValueError(f"MLPSpec.{what} must be positive, got {n}")
        for what, name in [("hidden_activation", self.hidden_activation),
                           ("output_activation", self.output_activation)]:
            if name not in ACTIVATIONS:
                raise ValueError(f"MLPSpec.{what}: unknown activation {name!r}; "
                                 f"choose one of {', '.join(ACTIVATIONS)}")
        get_activation("leaky_relu", self.leaky_slope)  # validates the slope

    @property
    def sizes(self) -> list[int]:
        """[in, hidden..., out]: layer i maps sizes[i] -> sizes[i + 1]."""
        return [self.in_size, *self.hidden_sizes, self.out_size]

    @property
    def num_layers(self) -> int:
        return len(self.hidden_sizes) + 1

    def activation(self, i: int):
        """The activation applied after dense layer i."""
        name = self.output_activation if i == self.num_layers - 1 else self.hidden_activation
        return get_activation(name, self.leaky_slope)

    def to_dict(self) -> dict:
        return {"in_size": self.in_size, "hidden_sizes": list(self.hidden_sizes), "out_size": self.out_size,
                "hidden_activation": self.hidden_activation, "output_activation": self.output_activation,
                "leaky_slope": self.leaky_slope}

    @classmethod
    def from_dict(cls, d: dict) -> "MLPSpec":
        return cls(**{**d, "hidden_sizes": tuple(d["hidden_sizes"])})


def param_shapes(spec: MLPSpec, prefix: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the MLP's parameters, in interchange order."""
    shapes = {}
    for i, (n_in, n_out) in enumerate(zip(spec.sizes[:-1], spec.sizes[1:], strict=True)):
        shapes[f"{prefix}.{i}.weight"] = (n_in, n_out)
        shapes[f"{prefix}.{i}.bias"] = (n_out,)
    return shapes


def init_params(spec: MLPSpec, prefix: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw initial parameters: every weight and bias of layer i ~ Uniform(-1/sqrt(n_in), 1/sqrt(n_in)).

    This is the distribution of torch.nn.Linear's default initialisation. The draws are made in
    interchange order (layer 0 weight, layer 0 bias, layer 1 weight, ...), each weight as an
    (n_in, n_out) array in row-major order, so the same rng state always gives the same parameters.
    """
    params = {}
    for name, shape in param_shapes(spec, prefix).items():
        bound = 1.0 / np.sqrt(spec.sizes[int(name.split(".")[1])])  # 1/sqrt(n_in) of this layer
        params[name] = rng.uniform(-bound, bound, size=shape)  # float64
    return params


def check_input(x, n_features: int, what: str):
    """Raise a clear error unless x is a finite floating-point array of shape (B, n_features)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{what} must be a floating-point array, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != n_features or x.shape[0] == 0:
        raise ValueError(f"{what} must have shape (batch > 0, {n_features}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or Inf")


def forward(spec: MLPSpec, params: dict, prefix: str, x):
    """Run the MLP on a batch x of shape (B, in_size).

    Returns (y, cache): y has shape (B, out_size); cache holds, per layer, the layer's input x_i and
    pre-activation h_i, which is exactly what backward needs.
    """
    cache = []
    for i in range(spec.num_layers):
        W, b = params[f"{prefix}.{i}.weight"], params[f"{prefix}.{i}.bias"]
        h = x @ W + b  # (B, n_in) @ (n_in, n_out) + (n_out,) -> (B, n_out)
        cache.append((x, h))
        x = spec.activation(i).forward(h)  # (B, n_out)
    return x, cache


def backward(spec: MLPSpec, params: dict, prefix: str, cache, grad_y):
    """Backpropagate dL/dy (shape (B, out_size)) through the MLP.

    Returns (grad_x, grads): grad_x = dL/dx of shape (B, in_size), and grads maps every parameter name
    to dL/dparam with the parameter's shape.
    """
    grads = {}
    grad = grad_y  # dL/dx_{i+1}, (B, n_out)
    for i in reversed(range(spec.num_layers)):
        x, h = cache[i]
        W = params[f"{prefix}.{i}.weight"]  # (n_in, n_out)
        grad_h = spec.activation(i).backward(grad, h)  # dL/dh_i = dL/dx_{i+1} * f'(h_i), (B, n_out)
        grads[f"{prefix}.{i}.weight"] = x.T @ grad_h  # (n_in, B) @ (B, n_out) -> (n_in, n_out)
        grads[f"{prefix}.{i}.bias"] = grad_h.sum(axis=0)  # (n_out,)
        grad = grad_h @ W.T  # dL/dx_i, (B, n_out) @ (n_out, n_in) -> (B, n_in)
    ordered = {name: grads[name] for name in param_shapes(spec, prefix)}  # interchange order
    return grad, ordered
