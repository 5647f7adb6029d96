"""Optimizers, written out so each line can be matched against a framework's.

An optimizer here is a pure function of (params, grads, state) that returns new params and a new state;
nothing is updated in place, so an update can be replayed, compared, or differentiated through later.

State is a flat dict in the interchange format (every backend imports and exports exactly this):

    "step"                      float64 scalar array: how many updates have been applied
    "{param}.momentum_buffer"   SGD with momentum > 0, and RMSprop with momentum > 0
    "{param}.exp_avg"           Adam's first moment m
    "{param}.exp_avg_sq"        Adam's second moment v
    "{param}.square_avg"        RMSprop's running mean of g^2

The names are torch.optim's, and every formula below is the one torch.optim implements (defaults
included), so a torch backend configured the same way must agree to rounding error.
"""

import numbers
from dataclasses import asdict, dataclass

import numpy as np

OPTIMIZERS = ("sgd", "adam", "rmsprop")


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer and its hyperparameters. Fields an optimizer does not use are ignored."""

    name: str = "adam"
    lr: float = 1e-3
    beta1: float = 0.5  # Adam; 0.5 rather than torch's 0.9 is the usual GAN choice (Radford et al. 2015)
    beta2: float = 0.999  # Adam
    alpha: float = 0.99  # RMSprop's smoothing constant (torch's default)
    eps: float = 1e-8  # Adam and RMSprop
    momentum: float = 0.0  # SGD and RMSprop

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; choose one of {', '.join(OPTIMIZERS)}")
        for field in ("lr", "beta1", "beta2", "alpha", "eps", "momentum"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise ValueError(f"optimizer {field} must be a finite number, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"optimizer lr must be positive, got {self.lr}")
        if self.eps <= 0:
            raise ValueError(f"optimizer eps must be positive, got {self.eps}")
        for field in ("beta1", "beta2", "alpha", "momentum"):
            if not 0.0 <= getattr(self, field) < 1.0:
                raise ValueError(f"optimizer {field} must be in [0, 1), got {getattr(self, field)}")

    def to_dict(self) -> dict:
        return {k: float(v) if k != "name" else v for k, v in asdict(self).items()}


def buffer_names(spec: OptimizerSpec) -> list[str]:
    """The buffers this optimizer keeps for every parameter (torch.optim's names)."""
    if spec.name == "sgd":
        return ["momentum_buffer"] if spec.momentum > 0 else []
    if spec.name == "adam":
        return ["exp_avg", "exp_avg_sq"]
    return ["square_avg"] + (["momentum_buffer"] if spec.momentum > 0 else [])


def state_names(spec: OptimizerSpec, param_names) -> list[str]:
    """Every entry of this optimizer's state, in interchange order: "step", then each parameter's buffers."""
    return ["step"] + [f"{p}.{s}" for p in param_names for s in buffer_names(spec)]


def check_state(spec: OptimizerSpec, params: dict, state: dict, what: str) -> int:
    """Raise a clear error unless `state` is this optimizer's state for `params`; return the step count.

    Checks the names, that every buffer is a finite float array of its parameter's shape, and that "step"
    is a whole number >= 0. `what` names the network ("D" or "G") in the messages.
    """
    if not isinstance(state, dict):
        raise TypeError(f"{what} optimizer state must be a dict, got {type(state).__name__}")
    expected = state_names(spec, params)
    missing, extra = set(expected) - set(state), set(state) - set(expected)
    if missing or extra:
        raise ValueError(f"{what} optimizer state does not match the config ({spec.name}, momentum {spec.momentum}): "
                         f"missing {sorted(missing)}, unexpected {sorted(extra)}")
    for name in expected:
        value = state[name]
        if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
            raise TypeError(f"{what} optimizer state {name} must be a floating-point numpy array")
        shape = () if name == "step" else np.shape(params[name.rsplit(".", 1)[0]])
        if value.shape != shape:
            raise ValueError(f"{what} optimizer state {name} has shape {value.shape}, expected {shape}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{what} optimizer state {name} contains NaN or Inf")
    step = float(state["step"])
    if step < 0 or step != np.floor(step):
        raise ValueError(f"{what} optimizer state step must be a non-negative whole number, got {step}")
    return int(step)


def init_state(spec: OptimizerSpec, params: dict) -> dict:
    """A fresh state: step 0 and every buffer zero (as torch creates them on the first step)."""
    state = {"step": np.zeros((), dtype=np.float64)}
    for param_name in params:
        for buffer in buffer_names(spec):
            state[f"{param_name}.{buffer}"] = np.zeros_like(params[param_name])
    return state


def step(spec: OptimizerSpec, params: dict, grads: dict, state: dict):
    """Apply one update to every parameter that has a gradient. Returns (new_params, new_state)."""
    t = np.asarray(state["step"] + 1.0)  # the number of this update, counting from 1 (a 0-d array)
    new_params, new_state = dict(params), {**state, "step": t}  # buffers of params without a gradient are kept
    for name, g in grads.items():
        p = params[name]
        if spec.name == "sgd":
            new_params[name] = _sgd(spec, name, p, g, state, new_state)
        elif spec.name == "adam":
            new_params[name] = _adam(spec, name, p, g, state, new_state, t)
        else:
            new_params[name] = _rmsprop(spec, name, p, g, state, new_state)
    return new_params, new_state


def _sgd(spec, name, p, g, state, new_state):
    """SGD with (heavy-ball) momentum, torch.optim.SGD with dampening 0 and nesterov off:

        buf <- momentum * buf + g         (buf starts at 0, so the first buf is g itself)
        p   <- p - lr * buf               (with momentum 0: p <- p - lr * g, no buffer kept)
    """
    if spec.momentum == 0:
        return p - spec.lr * g
    buf = spec.momentum * state[f"{name}.momentum_buffer"] + g
    new_state[f"{name}.momentum_buffer"] = buf
    return p - spec.lr * buf


def _adam(spec, name, p, g, state, new_state, t):
    """Adam (Kingma & Ba 2015) exactly as torch.optim.Adam computes it, eps outside the square root:

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The two (1 - beta^t) factors undo the bias of m and v towards their zero start.
    """
    m = spec.beta1 * state[f"{name}.exp_avg"] + (1.0 - spec.beta1) * g
    v = spec.beta2 * state[f"{name}.exp_avg_sq"] + (1.0 - spec.beta2) * g * g
    new_state[f"{name}.exp_avg"], new_state[f"{name}.exp_avg_sq"] = m, v
    step_size = spec.lr / (1.0 - spec.beta1**t)
    denom = np.sqrt(v) / np.sqrt(1.0 - spec.beta2**t) + spec.eps
    return p - step_size * m / denom


def _rmsprop(spec, name, p, g, state, new_state):
    """RMSprop (Tieleman & Hinton 2012) as torch.optim.RMSprop computes it (not centered):

        s   <- alpha * s + (1 - alpha) * g^2
        p   <- p - lr * g / (sqrt(s) + eps)                       with momentum 0 (torch's default)
        buf <- momentum * buf + g / (sqrt(s) + eps);  p <- p - lr * buf      with momentum > 0
    """
    s = spec.alpha * state[f"{name}.square_avg"] + (1.0 - spec.alpha) * g * g
    new_state[f"{name}.square_avg"] = s
    direction = g / (np.sqrt(s) + spec.eps)
    if spec.momentum > 0:
        direction = spec.momentum * state[f"{name}.momentum_buffer"] + direction
        new_state[f"{name}.momentum_buffer"] = direction
    return p - spec.lr * direction
