"""reference/optim.py's optimizers built from optax, and their state in the interchange format.

Each optimizer is an optax GradientTransformation configured so that it computes torch.optim's (and the
reference's) update:

    adam     optax.adam(lr, b1, b2, eps). optax divides the bias-corrected moments,
             m_hat / (sqrt(v / (1 - b2^t)) + eps), which is torch's (lr / (1 - b1^t)) m / (sqrt(v) /
             sqrt(1 - b2^t) + eps) written differently: eps sits outside the square root and after the
             bias correction in both (eps_root stays 0).
    sgd      optax.sgd(lr, momentum): trace buf <- momentum * buf + g from buf = 0, so the first buf is g,
             as torch's; without momentum there is no trace, only "step".
    rmsprop  scale_by_rms(decay=alpha, eps, initial_scale=0, eps_in_sqrt=False): s starts at 0 and the
             direction is g / (sqrt(s) + eps), torch's (optax's default puts eps inside the sqrt). With
             momentum the trace comes BEFORE the learning rate, so the trace is torch's momentum_buffer
             itself (optax.rmsprop scales first, which would store -lr * buffer).

The interchange state ("step", "{param}.exp_avg", ...) maps one to one onto these optax states:
exp_avg = ScaleByAdamState.mu, exp_avg_sq = .nu, square_avg = ScaleByRmsState.nu, momentum_buffer =
TraceState.trace. "step" is kept by the backend next to the optax state (an int32 count; for Adam it is
also optax's count, which drives the bias correction).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from reference.optim import OptimizerSpec, state_names

MAX_STEP = np.iinfo(np.int32).max


def make(spec: OptimizerSpec) -> optax.GradientTransformation:
    """The optax transformation that performs reference.optim.step for this spec."""
    if spec.name == "adam":
        return optax.adam(spec.lr, b1=spec.beta1, b2=spec.beta2, eps=spec.eps)
    if spec.name == "sgd":
        return optax.sgd(spec.lr, momentum=spec.momentum if spec.momentum > 0 else None)
    parts = [optax.scale_by_rms(decay=spec.alpha, eps=spec.eps, initial_scale=0.0, eps_in_sqrt=False)]
    if spec.momentum > 0:
        parts.append(optax.trace(decay=spec.momentum))
    parts.append(optax.scale(-spec.lr))
    return optax.chain(*parts)


def _buffers(opt_state) -> dict[str, dict]:
    """The per-parameter buffers of an optax state, by interchange suffix (each a dict name -> array)."""
    found = {}
    for part in opt_state if isinstance(opt_state, tuple) and not hasattr(opt_state, "_fields") else (opt_state,):
        if isinstance(part, optax.ScaleByAdamState):
            found["exp_avg"], found["exp_avg_sq"] = part.mu, part.nu
        elif isinstance(part, optax.TraceState):
            found["momentum_buffer"] = part.trace
        elif isinstance(part, optax.ScaleByRmsState):
            found["square_avg"] = part.nu
    return found


def export_state(spec: OptimizerSpec, opt_state, count, param_names) -> dict[str, np.ndarray]:
    """The interchange state (float64 NumPy, interchange order) of an optax state and its step count."""
    buffers = _buffers(opt_state)
    out = {"step": np.array(float(count), dtype=np.float64)}
    for name in state_names(spec, param_names)[1:]:
        param, suffix = name.rsplit(".", 1)
        out[name] = np.array(buffers[suffix][param], dtype=np.float64)
    return out


def import_state(spec: OptimizerSpec, tx: optax.GradientTransformation, params: dict, state: dict, dtype):
    """The optax state (arrays of `dtype`) holding the interchange `state`; `params` gives the structure.

    Returns (optax_state, count) with count an int32 array (the step, again). Call Backend.check_state first.
    """
    step = int(np.asarray(state["step"]))
    fresh = tx.init(params)

    def buffer(suffix):
        return {p: jnp.asarray(np.asarray(state[f"{p}.{suffix}"]), dtype=dtype) for p in params}

    def fill(part):
        if isinstance(part, optax.ScaleByAdamState):
            return part._replace(count=jnp.asarray(step, dtype=jnp.int32), mu=buffer("exp_avg"),
                                 nu=buffer("exp_avg_sq"))
        if isinstance(part, optax.TraceState):
            return part._replace(trace=buffer("momentum_buffer"))
        if isinstance(part, optax.ScaleByRmsState):
            return part._replace(nu=buffer("square_avg"))
        return part

    if isinstance(fresh, tuple) and not hasattr(fresh, "_fields"):
        filled = tuple(fill(part) for part in fresh)
    else:
        filled = fill(fresh)
    return filled, jnp.asarray(step, dtype=jnp.int32)  # its own buffer: the carry is donated to XLA
