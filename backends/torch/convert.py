"""The interchange format <-> torch, in one place.

The interchange format stores a dense layer's weight as W with shape (n_in, n_out), because the reference
computes y = x @ W + b. torch.nn.Linear stores weight with shape (n_out, n_in) and computes
y = x @ weight.T + bias, so weight = W.T. Every array that has a weight's shape (the weight itself, its
gradient, and the optimizer's per-parameter buffers exp_avg, exp_avg_sq, square_avg, momentum_buffer)
crosses the boundary through `to_torch` / `to_numpy` below, and nowhere else, so the transpose is done
exactly once each way.

Names: the interchange name "G.{i}.weight" is the `weight` of `nets["G"].linears[i]` (and likewise for
biases and for "D"); `parameter` resolves a name to the live tensor.

Optimizer state: the interchange state (reference/optim.py) is one dict per optimizer with one "step"
and per-parameter buffers "{param}.{buffer}" whose buffer names are torch.optim's own. torch keeps a
state dict per parameter (and a "step" per parameter for Adam and RMSprop; SGD keeps none), so
`optimizer_state_dict` builds a torch.optim state_dict that `Optimizer.load_state_dict` accepts, and
`export_optimizer_state` reads the live buffers back.
"""

from __future__ import annotations

import numpy as np
import torch

from reference import optim


def is_weight(name: str) -> bool:
    """True for an interchange weight name "X.i.weight" (the arrays that are transposed)."""
    return name.endswith(".weight")


def to_torch(name: str, value, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The torch-layout tensor (a fresh copy, never sharing memory with `value`) of the interchange array
    `value` belonging to parameter `name`."""
    array = np.asarray(value)
    if is_weight(name):
        array = array.T
    return torch.tensor(np.ascontiguousarray(array), dtype=dtype, device=device)


def to_numpy(name: str, tensor: torch.Tensor) -> np.ndarray:
    """The interchange-layout float64 NumPy copy of a torch tensor belonging to parameter `name`."""
    array = tensor.detach().to(device="cpu", dtype=torch.float64, copy=True).numpy()
    return np.ascontiguousarray(array.T) if is_weight(name) else array


def parameter(nets: dict, name: str) -> torch.nn.Parameter:
    """The live tensor of interchange parameter `name` ("G.0.weight", "D.2.bias", ...)."""
    prefix, index, kind = name.split(".")
    return getattr(nets[prefix].linears[int(index)], kind)


def optimizer_state_dict(optimizer: torch.optim.Optimizer, spec: optim.OptimizerSpec, names: list[str],
                         state: dict, dtype: torch.dtype, device: torch.device) -> dict:
    """A torch.optim state_dict for `optimizer` (whose single param group holds the parameters `names`, in
    order) carrying the interchange `state`. Adam and RMSprop get torch's per-parameter "step"; torch's
    load_state_dict then puts it where the optimizer's implementation (single-tensor, foreach, fused)
    wants it."""
    step = float(state["step"])
    per_param = {}
    for index, name in enumerate(names):
        entry = {key: to_torch(name, state[f"{name}.{key}"], dtype, device) for key in optim.buffer_names(spec)}
        if spec.name in ("adam", "rmsprop"):
            entry["step"] = torch.tensor(step, dtype=torch.float32)
        per_param[index] = entry
    current = optimizer.state_dict()
    return {"state": per_param, "param_groups": current["param_groups"]}


def export_optimizer_state(optimizer: torch.optim.Optimizer, spec: optim.OptimizerSpec, nets: dict,
                           names: list[str], step: int) -> dict[str, np.ndarray]:
    """The interchange state of `optimizer`, which optimizes the parameters `names` of `nets`."""
    result = {"step": np.asarray(float(step), dtype=np.float64)}
    keys = optim.buffer_names(spec)
    for name in names:
        live = optimizer.state[parameter(nets, name)]
        for key in keys:
            if key in live and live[key] is not None:
                result[f"{name}.{key}"] = to_numpy(name, live[key])
            else:  # not created yet: torch creates every buffer as zeros on the first step
                result[f"{name}.{key}"] = np.zeros(np.shape(to_numpy(name, parameter(nets, name))))
    return result
