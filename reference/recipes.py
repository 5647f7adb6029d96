"""Default training recipes: the settings every CLI (the reference's and the backends') starts from.

A recipe turns a dataset name and a loss name into a full TrainConfig plus a default number of rounds.
Any field can be overridden. The defaults were chosen by experiment on this project's 2-core CPU
(see docs/course): with seed 0 the non-saturating GAN on `ring` reaches all 8 modes with 81% of its
samples high-quality after 5,000 rounds. Mode coverage depends on the seed, as it does for every GAN on
this data (PacGAN's Table 1 reports 6.3 of 8 modes on average for a plain GAN): seeds 1 and 2 reach
5 and 8 modes.

    minimax / nonsaturating:  Adam(lr 1e-3, betas (0.5, 0.999)) for both networks, k = m = 1
    wasserstein:              RMSprop(lr 5e-5) for both, k = 5 critic steps per G step, clip c = 0.01
                              (the settings of Arjovsky et al. 2017, Algorithm 1)
    wasserstein + wgan-gp:    Adam(lr 1e-4) for both, k = 5, no clipping (Gulrajani et al. 2017); for the
                              images betas (0, 0.9) and lambda = 10 (their Algorithm 1), for the toy data
                              betas (0.5, 0.9) and lambda = 0.1 (their toy-data code). Measured on ring,
                              5,000 rounds, torch, seed 0: the toy settings reach 8/8 modes and 47.7%
                              high-quality samples; Algorithm 1's collapse to one blob (0/8, 0% even after
                              20,000 rounds).

Networks are ReLU MLPs; D outputs a logit (identity output). G's output is identity for the toy data,
and tanh for images scaled to [-1, 1].
"""

from dataclasses import dataclass

from . import gan, mlp, optim, train
from .penalty import PenaltySpec


@dataclass(frozen=True)
class Recipe:
    z_size: int
    hidden: tuple[int, ...]
    steps: int
    batch_size: int = 128
    g_output: str = "identity"


RECIPES = {  # per dataset: network sizes and a default length that works for the non-saturating loss
    "gaussian1d": Recipe(z_size=1, hidden=(32, 32), steps=2000),
    "ring": Recipe(z_size=2, hidden=(64, 64), steps=5000),
    "grid": Recipe(z_size=2, hidden=(128, 128), steps=8000),
    "swissroll": Recipe(z_size=2, hidden=(128, 128), steps=5000),
    "digits": Recipe(z_size=32, hidden=(256, 256), steps=5000, batch_size=64, g_output="tanh"),
    "mnist": Recipe(z_size=64, hidden=(512, 512), steps=20000, batch_size=128, g_output="tanh"),
}


def default_config(dataset: str, data_size: int, loss: str = "nonsaturating", *, z_size=None, hidden=None,
                   batch_size=None, d_optimizer=None, g_optimizer=None, d_steps=None, g_steps=None,
                   clip_value=None, penalty: str | None = None) -> train.TrainConfig:
    """The recipe's TrainConfig for `dataset` (whose samples have `data_size` numbers), with overrides.
    penalty: a gradient penalty's kind, with its default weight (PENALTY_WEIGHTS)."""
    if dataset not in RECIPES:
        raise ValueError(f"no recipe for dataset {dataset!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[dataset]
    z_size = z_size or recipe.z_size
    hidden = tuple(hidden or recipe.hidden)
    spec = gan.GANSpec(
        generator=mlp.MLPSpec(z_size, hidden, data_size, "relu", recipe.g_output),
        discriminator=mlp.MLPSpec(data_size, hidden, 1, "relu", "identity"),
        loss=loss,
    )
    if loss == "wasserstein" and penalty == "wgan-gp":
        default_opt = optim.OptimizerSpec("adam", lr=1e-4, beta1=0.0 if dataset in IMAGES else 0.5, beta2=0.9)
        default_d_steps, default_clip = 5, None
    elif loss == "wasserstein":
        default_opt = optim.OptimizerSpec("rmsprop", lr=5e-5)
        default_d_steps, default_clip = 5, 0.01
    else:
        default_opt = optim.OptimizerSpec("adam", lr=1e-3, beta1=0.5, beta2=0.999)
        default_d_steps, default_clip = 1, None
    return train.TrainConfig(
        spec,
        d_optimizer=d_optimizer or default_opt,
        g_optimizer=g_optimizer or default_opt,
        batch_size=batch_size or recipe.batch_size,
        d_steps=d_steps or default_d_steps,
        g_steps=g_steps or 1,
        clip_value=clip_value if clip_value is not None else default_clip,
        penalty=None if penalty is None else PenaltySpec(penalty, penalty_weight(penalty, dataset)),
    )


def default_steps(dataset: str) -> int:
    return RECIPES[dataset].steps if dataset in RECIPES else 5000


# The weight of each gradient penalty when none is given: gamma = 1 for R1 and Roth et al.'s regulariser
# (the Dirac GAN of experiments/failure_to_converge.py converges with it); lambda = 10 for WGAN-GP on images
# (Gulrajani et al. 2017, Algorithm 1) and 0.1 on the toy data (their toy-data code; see the docstring above).
PENALTY_WEIGHTS = {"r1": 1.0, "roth": 1.0, "wgan-gp": 10.0}
TOY_PENALTY_WEIGHTS = {**PENALTY_WEIGHTS, "wgan-gp": 0.1}
IMAGES = ("digits", "mnist")


def penalty_weight(kind: str, dataset: str) -> float:
    """The default weight of a gradient penalty for a dataset."""
    return (PENALTY_WEIGHTS if dataset in IMAGES else TOY_PENALTY_WEIGHTS)[kind]
