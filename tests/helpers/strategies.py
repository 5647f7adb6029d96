"""Hypothesis strategies for ganspec's objects, shared by the reference, backend and conformance tests.

    seeds                  integer seeds for numpy Generators and gan.init_params
    leaky_slopes           LeakyReLU slopes in [0, 0.9]
    mlp_specs              reference.mlp.MLPSpec: depth, widths and activations
    gan_specs              reference.gan.GANSpec: G and D specs that fit together, D with a logit output
    optimizer_specs        reference.optim.OptimizerSpec with hyperparameters a practitioner might use
    train_configs          reference.train.TrainConfig: a GAN spec, both optimizers, k, m, clipping
    logits                 (B, 1) float64 arrays of D outputs, from tiny to +-1e4 (Hypothesis picks edges)
    batches                (B, n) float64 arrays of bounded finite values
    normal_arrays          float64 arrays of N(0, scale^2) entries drawn from a seed: "generic" values,
                           for finite-difference checks that must stay away from ties and kinks
    step_inputs            reference.train.StepInputs for a config, from normal_arrays

Every strategy takes keyword arguments to narrow it (sizes, names, ranges), so a caller can ask for
exactly the corner of the space its test is about.
"""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reference import gan, losses, mlp, optim, train
from reference.activations import ACTIVATIONS

SMOOTH_ACTIVATIONS = ("identity", "tanh", "sigmoid")  # differentiable everywhere: no kinks to avoid
KINKED_ACTIVATIONS = ("relu", "leaky_relu")

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def leaky_slopes(min_value: float = 0.0, max_value: float = 0.9):
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False, allow_infinity=False)


@st.composite
def mlp_specs(draw, *, in_size=None, out_size=None, min_depth: int = 0, max_depth: int = 3, min_width: int = 1,
              max_width: int = 16, hidden_activations=ACTIVATIONS, output_activations=ACTIVATIONS):
    """An MLPSpec with min_depth..max_depth hidden layers of min_width..max_width units.

    in_size / out_size: a fixed int, or None to draw one from min_width..max_width.
    """
    width = st.integers(min_value=min_width, max_value=max_width)
    depth = draw(st.integers(min_value=min_depth, max_value=max_depth))
    return mlp.MLPSpec(
        in_size=draw(width) if in_size is None else in_size,
        hidden_sizes=tuple(draw(width) for _ in range(depth)),
        out_size=draw(width) if out_size is None else out_size,
        hidden_activation=draw(st.sampled_from(hidden_activations)),
        output_activation=draw(st.sampled_from(output_activations)),
        leaky_slope=draw(leaky_slopes()),
    )


@st.composite
def gan_specs(draw, *, loss=None, z_size=None, data_size=None, max_depth: int = 2, max_width: int = 8,
              hidden_activations=ACTIVATIONS, g_output_activations=("identity", "tanh")):
    """A GANSpec: G maps z_size -> data_size, D maps data_size -> one logit (identity output)."""
    small = st.integers(min_value=1, max_value=max_width)
    z_size = draw(small) if z_size is None else z_size
    data_size = draw(small) if data_size is None else data_size
    generator = draw(mlp_specs(in_size=z_size, out_size=data_size, max_depth=max_depth, max_width=max_width,
                               hidden_activations=hidden_activations, output_activations=g_output_activations))
    discriminator = draw(mlp_specs(in_size=data_size, out_size=1, max_depth=max_depth, max_width=max_width,
                                   hidden_activations=hidden_activations, output_activations=("identity",)))
    loss = draw(st.sampled_from(losses.LOSSES)) if loss is None else loss
    return gan.GANSpec(generator, discriminator, loss)


def _log_uniform(low_exp: float, high_exp: float):
    return st.floats(min_value=low_exp, max_value=high_exp).map(lambda e: float(10.0**e))


@st.composite
def optimizer_specs(draw, *, names=optim.OPTIMIZERS, momentum=None, lr_range=(1e-5, 1e-1)):
    """An OptimizerSpec. momentum: None draws 0 or a value in [0.1, 0.95]; "positive" forces > 0; a number fixes it."""
    name = draw(st.sampled_from(names))
    if momentum is None:
        momentum = draw(st.one_of(st.just(0.0), st.floats(min_value=0.1, max_value=0.95)))
    elif momentum == "positive":
        momentum = draw(st.floats(min_value=0.1, max_value=0.95))
    return optim.OptimizerSpec(
        name=name,
        lr=draw(_log_uniform(np.log10(lr_range[0]), np.log10(lr_range[1]))),
        beta1=draw(st.floats(min_value=0.0, max_value=0.95)),
        beta2=draw(st.floats(min_value=0.9, max_value=0.9999)),
        alpha=draw(st.floats(min_value=0.8, max_value=0.999)),
        eps=draw(_log_uniform(-10, -5)),
        momentum=float(momentum),
    )


@st.composite
def train_configs(draw, *, loss=None, max_depth: int = 2, max_width: int = 8, hidden_activations=ACTIVATIONS,
                  max_d_steps: int = 3, max_g_steps: int = 3, max_batch: int = 8):
    """A TrainConfig; WGAN configs get a clip value (or sometimes None), the others never clip."""
    spec = draw(gan_specs(loss=loss, max_depth=max_depth, max_width=max_width,
                          hidden_activations=hidden_activations))
    clip_value = None
    if spec.loss == "wasserstein":
        clip_value = draw(st.one_of(st.none(), _log_uniform(-3, 0)))
    return train.TrainConfig(
        spec,
        d_optimizer=draw(optimizer_specs()),
        g_optimizer=draw(optimizer_specs()),
        batch_size=draw(st.integers(min_value=1, max_value=max_batch)),
        d_steps=draw(st.integers(min_value=1, max_value=max_d_steps)),
        g_steps=draw(st.integers(min_value=1, max_value=max_g_steps)),
        clip_value=clip_value,
    )


def logits(*, min_batch: int = 1, max_batch: int = 64, max_abs: float = 1e4):
    """(B, 1) float64 logits in [-max_abs, max_abs], every float Hypothesis likes included (0, tiny, huge)."""
    return hnp.arrays(np.float64, st.tuples(st.integers(min_value=min_batch, max_value=max_batch), st.just(1)),
                      elements=st.floats(min_value=-max_abs, max_value=max_abs, allow_nan=False,
                                         allow_infinity=False, allow_subnormal=False))


def batches(n_features: int, *, min_batch: int = 1, max_batch: int = 32, max_abs: float = 10.0):
    """(B, n_features) float64 arrays of finite values in [-max_abs, max_abs]."""
    return hnp.arrays(np.float64, st.tuples(st.integers(min_value=min_batch, max_value=max_batch),
                                            st.just(n_features)),
                      elements=st.floats(min_value=-max_abs, max_value=max_abs, allow_nan=False,
                                         allow_infinity=False, allow_subnormal=False))


def normal_arrays(shape, *, scale: float = 1.0):
    """float64 arrays of the given shape with N(0, scale^2) entries, from a drawn seed."""
    return seeds.map(lambda seed: scale * np.random.default_rng(seed).standard_normal(shape))


def step_inputs(config, *, batch_size: int | None = None, data_scale: float = 1.0):
    """StepInputs for one round of `config`: k real batches, k fake-batch noises, m G noises."""
    b = config.batch_size if batch_size is None else batch_size
    k, m, spec = config.d_steps, config.g_steps, config.spec

    def build(seed):
        rng = np.random.default_rng(seed)
        return train.StepInputs(real=data_scale * rng.standard_normal((k, b, spec.data_size)),
                                z_d=rng.standard_normal((k, b, spec.z_size)),
                                z_g=rng.standard_normal((m, b, spec.z_size)))

    return seeds.map(build)
