"""The GAN's parts in torch: MLP modules from the reference's MLPSpec, the losses, and the optimizers.

Gradients come from autograd; nothing here is differentiated by hand. The losses are written on D's
logits with F.logsigmoid, which torch evaluates as min(l, 0) - log1p(exp(-|l|)): exact and finite for
logits of any size, as are its gradients (reference/losses.py explains the identities used):

    softplus(-l) = -logsigmoid(l)        softplus(l) = -logsigmoid(-l)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reference import losses, mlp, optim

_ACTIVATIONS = {
    "identity": lambda spec: nn.Identity(),
    "relu": lambda spec: nn.ReLU(),
    "leaky_relu": lambda spec: nn.LeakyReLU(spec.leaky_slope),
    "tanh": lambda spec: nn.Tanh(),
    "sigmoid": lambda spec: nn.Sigmoid(),
}


class MLP(nn.Module):
    """linears[i] (nn.Linear) followed by acts[i], for every layer of an MLPSpec.

    torch's ReLU and LeakyReLU take the same derivative at 0 as the reference (0 and the slope).
    """

    def __init__(self, spec: mlp.MLPSpec, dtype: torch.dtype, device: torch.device):
        super().__init__()
        self.spec = spec
        sizes = spec.sizes
        self.linears = nn.ModuleList(nn.Linear(n_in, n_out, dtype=dtype, device=device)
                                     for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True))
        self.acts = nn.ModuleList(_ACTIVATIONS[spec.activation(i).name](spec) for i in range(spec.num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, act in zip(self.linears, self.acts, strict=True):
            x = act(linear(x))
        return x


def param_names(spec: mlp.MLPSpec, prefix: str) -> list[str]:
    """The interchange names of an MLP's parameters, in interchange order."""
    return list(mlp.param_shapes(spec, prefix))


def d_loss(kind: str, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    """D's loss (the critic's for "wasserstein"), a mean over each batch, as in reference.losses.d_loss."""
    if losses.check_loss(kind) == "wasserstein":
        return fake_out.mean() - real_out.mean()  # E[C(G(z))] - E[C(x)]
    # mean softplus(-l_real) + mean softplus(l_fake): BCE with real labelled 1, fake labelled 0
    return -F.logsigmoid(real_out).mean() - F.logsigmoid(-fake_out).mean()


def g_loss(kind: str, fake_out: torch.Tensor) -> torch.Tensor:
    """G's loss, as in reference.losses.g_loss."""
    kind = losses.check_loss(kind)
    if kind == "minimax":
        return F.logsigmoid(-fake_out).mean()  # E[log(1 - D(G(z)))] = -mean softplus(l_fake)
    if kind == "nonsaturating":
        return -F.logsigmoid(fake_out).mean()  # -E[log D(G(z))] = mean softplus(-l_fake)
    return -fake_out.mean()  # -E[C(G(z))]


def make_optimizer(spec: optim.OptimizerSpec, params, *, foreach: bool | None = None,
                   fused: bool | None = None) -> torch.optim.Optimizer:
    """The torch.optim optimizer that computes reference.optim's update for `spec`.

    torch's defaults that the reference assumes are spelled out: no weight decay, SGD without dampening
    or Nesterov, RMSprop not centered, Adam without AMSGrad. `foreach` / `fused` choose torch's
    implementation (None: torch's default); all of them compute the same formulas.
    """
    common = {"lr": spec.lr, "weight_decay": 0.0, "foreach": foreach}
    if fused is not None:
        if spec.name == "rmsprop":
            raise ValueError("torch.optim.RMSprop has no fused implementation: use fused=None with rmsprop")
        common["fused"] = fused
    if spec.name == "sgd":
        return torch.optim.SGD(params, momentum=spec.momentum, dampening=0.0, nesterov=False, **common)
    if spec.name == "adam":
        return torch.optim.Adam(params, betas=(spec.beta1, spec.beta2), eps=spec.eps, amsgrad=False, **common)
    if spec.name == "rmsprop":
        return torch.optim.RMSprop(params, alpha=spec.alpha, eps=spec.eps, momentum=spec.momentum,
                                   centered=False, **common)
    raise ValueError(f"unknown optimizer {spec.name!r}")
