"""Bad input to the reference gets a clear error that names the problem, before anything is computed."""

import math

import numpy as np
import pytest

from reference import data, gan, losses, metrics, mlp, optim, recipes, train
from reference.activations import get_activation


def ring_config(**overrides):
    return recipes.default_config("ring", 2, hidden=(4,), batch_size=4, **overrides)


@pytest.fixture
def config():
    return ring_config()


@pytest.fixture
def params(config):
    return gan.init_params(config.spec, 0)


# ----- Unknown names -----

@pytest.mark.parametrize(("make", "name"), [
    (lambda: get_activation("swish"), "swish"),
    (lambda: mlp.MLPSpec(2, (3,), 1, hidden_activation="Relu"), "Relu"),
    (lambda: mlp.MLPSpec(2, (3,), 1, output_activation="softmax"), "softmax"),
    (lambda: losses.check_loss("hinge"), "hinge"),
    (lambda: gan.GANSpec(mlp.MLPSpec(1, (), 2), mlp.MLPSpec(2, (), 1), loss="lsgan"), "lsgan"),
    (lambda: losses.d_loss("least_squares", np.zeros((1, 1)), np.zeros((1, 1))), "least_squares"),
    (lambda: losses.g_loss("wgan-gp", np.zeros((1, 1))), "wgan-gp"),
    (lambda: optim.OptimizerSpec("adagrad"), "adagrad"),
    (lambda: data.get_dataset("moons"), "moons"),
    (lambda: recipes.default_config("moons", 2), "moons"),
], ids=["activation", "hidden_activation", "output_activation", "check_loss", "GANSpec.loss", "d_loss", "g_loss",
        "optimizer", "dataset", "recipe"])
def test_unknown_names_are_value_errors_that_name_them(make, name):
    with pytest.raises(ValueError, match=f"unknown .*'{name}'|no recipe .*'{name}'") as info:
        make()
    assert "choose one of" in str(info.value)  # and list the valid choices


# ----- Sizes -----

@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"in_size": 0}, ValueError, r"in_size must be positive, got 0"),
    ({"out_size": -3}, ValueError, r"out_size must be positive, got -3"),
    ({"hidden_sizes": (4, 0)}, ValueError, r"hidden_sizes\[1\] must be positive"),
    ({"in_size": 2.0}, TypeError, r"in_size must be an int, got float"),
    ({"hidden_sizes": (4, 2.5)}, TypeError, r"hidden_sizes\[1\] must be an int"),
    ({"out_size": True}, TypeError, r"out_size must be an int, got bool"),
    ({"hidden_sizes": ("8",)}, TypeError, r"hidden_sizes\[0\] must be an int, got str"),
])
def test_mlp_sizes(kwargs, error, match):
    with pytest.raises(error, match=match):
        mlp.MLPSpec(**{"in_size": 2, "hidden_sizes": (4,), "out_size": 1, **kwargs})


def test_numpy_ints_are_sizes():
    assert mlp.MLPSpec(np.int64(2), (np.int32(3),), 1).sizes == [2, 3, 1]


@pytest.mark.parametrize("field", ["batch_size", "d_steps", "g_steps"])
@pytest.mark.parametrize("value", [0, -1, 2.0, "4", True, None])
def test_train_config_counts(field, value):
    with pytest.raises((ValueError, TypeError), match=f"{field} must be a positive int"):
        train.TrainConfig(**{**_config_kwargs(ring_config()), field: value})


def _config_kwargs(config):
    return {"spec": config.spec, "d_optimizer": config.d_optimizer, "g_optimizer": config.g_optimizer,
            "batch_size": config.batch_size, "d_steps": config.d_steps, "g_steps": config.g_steps,
            "clip_value": config.clip_value}


@pytest.mark.parametrize("value", [0, -0.01, math.nan, math.inf])
def test_clip_value_must_be_positive_and_finite(config, value):
    with pytest.raises(ValueError, match="clip_value must be a positive number or None"):
        train.TrainConfig(**{**_config_kwargs(config), "clip_value": value})


@pytest.mark.parametrize("n", [0, -5, 2.5, "10", True])
def test_dataset_sample_sizes(n):
    with pytest.raises(ValueError, match="number of samples must be a positive int"):
        data.get_dataset("ring").sample(n, np.random.default_rng(0))


@pytest.mark.parametrize("slope", [-0.1, 1.0, 1.5, math.nan, math.inf])
def test_leaky_slope_range(slope):
    with pytest.raises(ValueError, match="leaky_relu slope must be in \\[0, 1\\)"):
        get_activation("leaky_relu", slope)
    with pytest.raises(ValueError, match="leaky_relu slope"):
        mlp.MLPSpec(2, (3,), 1, "leaky_relu", leaky_slope=slope)


@pytest.mark.parametrize(("field", "value", "match"), [
    ("lr", 0.0, "lr must be positive"), ("lr", -1e-3, "lr must be positive"),
    ("lr", math.nan, "lr must be a finite number"), ("lr", "1e-3", "lr must be a finite number"),
    ("eps", 0.0, "eps must be positive"), ("beta1", 1.0, r"beta1 must be in \[0, 1\)"),
    ("beta2", -0.1, r"beta2 must be in \[0, 1\)"), ("alpha", 1.5, r"alpha must be in \[0, 1\)"),
    ("momentum", 1.0, r"momentum must be in \[0, 1\)"), ("momentum", math.inf, "momentum must be a finite number"),
    ("lr", True, "lr must be a finite number"),
])
def test_optimizer_hyperparameters(field, value, match):
    with pytest.raises(ValueError, match=f"optimizer {match}"):
        optim.OptimizerSpec("adam", **{field: value})


def test_numpy_floats_are_hyperparameters():
    assert optim.OptimizerSpec("adam", lr=np.float32(0.5)).lr == 0.5


def test_gan_spec_shapes_must_fit():
    with pytest.raises(ValueError, match="the discriminator must output 1 value, not 2"):
        gan.GANSpec(mlp.MLPSpec(2, (), 3), mlp.MLPSpec(3, (), 2))
    with pytest.raises(ValueError, match="makes samples of size 3 but the discriminator reads samples of size 2"):
        gan.GANSpec(mlp.MLPSpec(2, (), 3), mlp.MLPSpec(2, (), 1))


# ----- Arrays: shape, dtype, NaN -----

@pytest.mark.parametrize(("z", "error", "match"), [
    (np.zeros(2), ValueError, r"z must have shape \(batch > 0, 2\), got \(2,\)"),
    (np.zeros((3, 5)), ValueError, r"z must have shape \(batch > 0, 2\), got \(3, 5\)"),
    (np.zeros((0, 2)), ValueError, r"z must have shape \(batch > 0, 2\), got \(0, 2\)"),
    (np.zeros((3, 2), dtype=np.int64), TypeError, "z must be a floating-point array, got dtype int64"),
    (np.zeros((3, 2), dtype=bool), TypeError, "z must be a floating-point array"),
    ([[0.0, 0.0]], TypeError, "z must be a numpy array, got list"),
    (np.array([[0.0, math.nan]]), ValueError, "z contains NaN or Inf"),
    (np.array([[math.inf, 0.0]]), ValueError, "z contains NaN or Inf"),
])
def test_generate_checks_z(config, params, z, error, match):
    with pytest.raises(error, match=match):
        gan.generate(config.spec, params, z)
    with pytest.raises(error, match=match):
        gan.g_loss_and_grads(config.spec, params, z)


@pytest.mark.parametrize(("x_real", "error", "match"), [
    (np.zeros((3, 1)), ValueError, r"x_real must have shape \(batch > 0, 2\)"),
    (np.zeros((3, 2), dtype=np.int32), TypeError, "x_real must be a floating-point array"),
    (np.array([[0.0, math.nan]]), ValueError, "x_real contains NaN or Inf"),
])
def test_d_step_checks_the_real_batch(config, params, x_real, error, match):
    with pytest.raises(error, match=match):
        gan.d_loss_and_grads(config.spec, params, x_real, np.zeros((3, 2)))
    with pytest.raises(error, match=match.replace("x_real", "x")):
        gan.discriminate(config.spec, params, x_real)


def test_d_step_checks_z(config, params):
    with pytest.raises(ValueError, match="z contains NaN or Inf"):
        gan.d_update(config.spec, config.d_optimizer, params, optim.init_state(config.d_optimizer, params),
                     np.zeros((3, 2)), np.full((3, 2), math.nan))


def poke(array, value):
    """A copy of array with its last entry set to value."""
    array = array.copy()
    array.reshape(-1)[-1] = value
    return array


def good_inputs(config, batch=4):
    rng = np.random.default_rng(0)
    k, m = config.d_steps, config.g_steps
    return {"real": rng.standard_normal((k, batch, 2)), "z_d": rng.standard_normal((k, batch, 2)),
            "z_g": rng.standard_normal((m, batch, 2))}


@pytest.mark.parametrize(("field", "change", "error", "match"), [
    ("real", lambda a: a[0], ValueError, r"StepInputs.real must have shape \(1, None, 2\)"),
    ("real", lambda a: np.concatenate([a, a]), ValueError, r"StepInputs.real must have shape .*got \(2, 4, 2\)"),
    ("z_d", lambda a: a[..., :1], ValueError, r"StepInputs.z_d must have shape"),
    ("z_g", lambda a: a[:, :0], ValueError, "StepInputs.z_g has an empty batch"),
    ("real", lambda a: a.astype(np.int64), TypeError, "StepInputs.real must be a floating-point numpy array"),
    ("z_g", lambda a: a.tolist(), TypeError, "StepInputs.z_g must be a floating-point numpy array"),
    ("real", lambda a: poke(a, math.nan), ValueError, "StepInputs.real contains NaN or Inf"),
    ("z_d", lambda a: poke(a, -math.inf), ValueError, "StepInputs.z_d contains NaN or Inf"),
    ("z_g", lambda a: poke(a, math.nan), ValueError, "StepInputs.z_g contains NaN or Inf"),
])
def test_train_step_checks_its_inputs_and_leaves_the_state_alone(config, field, change, error, match):
    state = train.TrainState.initial(config, 0)
    before = {k: v.copy() for k, v in state.params.items()}
    inputs = good_inputs(config)
    inputs[field] = change(inputs[field])
    with pytest.raises(error, match=match):
        train.train_step(config, state, train.StepInputs(**inputs))
    assert all(np.array_equal(state.params[k], before[k]) for k in before) and state.step == 0


@pytest.mark.parametrize(("bad", "match"), [
    (lambda d: d[:, :1], r"data must be an array of shape \(N, 2\)"),
    (lambda d: d.tolist(), r"data must be an array of shape \(N, 2\)"),
    (lambda d: d[:, 0], r"data must be an array of shape \(N, 2\)"),
    (lambda d: poke(d, math.nan), "data contains NaN or Inf"),
])
def test_train_checks_the_data(config, bad, match):
    good = data.get_dataset("ring").sample(64, np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        train.train(config, bad(good), 2, seed=0)


@pytest.mark.parametrize("steps", [-1, 2.5])
def test_train_checks_steps(config, steps):
    good = data.get_dataset("ring").sample(64, np.random.default_rng(0))
    with pytest.raises((ValueError, TypeError), match="steps"):
        train.train(config, good, steps, seed=0)


@pytest.mark.parametrize("bad", [np.zeros((0, 2)), np.zeros((8, 2), dtype=np.int64)], ids=["empty", "int"])
def test_train_rejects_empty_or_integer_data(config, bad):
    with pytest.raises((ValueError, TypeError), match="data"):
        train.train(config, bad, 2, seed=0)


# ----- Parameters -----

def test_check_params_accepts_the_init(config, params):
    gan.check_params(config.spec, params)


def test_check_params_missing(config, params):
    del params["D.1.bias"]
    with pytest.raises(ValueError, match=r"missing \['D.1.bias'\], unexpected \[\]"):
        gan.check_params(config.spec, params)


def test_check_params_extra(config, params):
    params["D.2.weight"] = np.zeros((1, 1))
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['D.2.weight'\]"):
        gan.check_params(config.spec, params)


def test_check_params_wrong_shape(config, params):
    params["G.0.weight"] = params["G.0.weight"].T.copy()
    with pytest.raises(ValueError, match=r"parameter G.0.weight has shape \(4, 2\), expected \(2, 4\)"):
        gan.check_params(config.spec, params)


@pytest.mark.parametrize("value", [np.zeros(4, dtype=np.int64), [0.0] * 4, np.zeros(4, dtype=bool)])
def test_check_params_wrong_type(config, params, value):
    params["G.0.bias"] = value
    with pytest.raises(TypeError, match="parameter G.0.bias must be a floating-point numpy array"):
        gan.check_params(config.spec, params)


# ----- Metrics -----

@pytest.mark.parametrize(("samples", "match"), [
    (np.zeros((3, 3)), r"samples must have shape \(N > 0, 2\), got \(3, 3\)"),
    (np.zeros((0, 2)), r"samples must have shape \(N > 0, 2\)"),
    (np.zeros(2), r"samples must have shape"),
    (np.array([[0.0, math.nan]]), "samples contain NaN or Inf"),
])
def test_mode_metrics_checks_samples(samples, match):
    with pytest.raises(ValueError, match=match):
        metrics.mode_metrics(samples, data.ring_modes(), 0.01)


@pytest.mark.parametrize("sigma", [0.0, -0.01])
def test_mode_metrics_checks_sigma(sigma):
    with pytest.raises(ValueError, match="sigma"):
        metrics.mode_metrics(np.zeros((3, 2)), data.ring_modes(), sigma)
