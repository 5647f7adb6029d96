"""Instance noise and gradient penalties inside the D and G steps and the training round."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.interface import ReferenceBackend, required_features
from reference import gan, losses, mlp, penalty, train
from reference.penalty import PenaltySpec
from tests.helpers.finite_diff import assert_gradients_close, noise_floor, numerical_gradients
from tests.reference.test_gan_steps import EPS, ORDER
from tests.reference.test_penalty import penalty_by_backward, penalty_cases


@pytest.mark.parametrize("kind", penalty.PENALTIES)
@given(case=penalty_cases(), weight=st.sampled_from([0.5, 10.0]), sigma=st.sampled_from([0.0, 0.3]))
def test_d_step_with_noise_and_penalty_matches_central_differences(kind, case, weight, sigma):
    spec, params, x_real, _, mix = case
    if kind == "roth" and spec.loss == "wasserstein":
        spec = gan.GANSpec(spec.generator, spec.discriminator, "minimax")
    rng = np.random.default_rng(5)
    z = rng.standard_normal((len(x_real), spec.z_size))
    real_noise, fake_noise = (sigma * rng.standard_normal(x_real.shape) for _ in range(2))
    pen = PenaltySpec(kind, weight)

    def loss(p):  # by forward passes and mlp.backward only
        x_fake = gan.generate(spec, p, z) + fake_noise
        noisy_real = x_real + real_noise
        base = losses.d_loss(spec.loss, gan.discriminate(spec, p, noisy_real), gan.discriminate(spec, p, x_fake))[0]
        return base + weight * penalty_by_backward(spec, kind, p, noisy_real, x_fake, mix)

    grads, stats = gan.d_loss_and_grads(spec, params, x_real, z, real_noise=real_noise, fake_noise=fake_noise,
                                        penalty_spec=pen, mix=mix)
    assert stats.loss == pytest.approx(loss(params), rel=1e-12)
    assert stats.penalty == pytest.approx(weight * penalty_by_backward(
        spec, kind, params, x_real + real_noise, gan.generate(spec, params, z) + fake_noise, mix), rel=1e-12)
    numeric = numerical_gradients(loss, params, grads, EPS, ORDER)
    assert_gradients_close(grads, numeric, atol=noise_floor(max(abs(stats.loss), 1.0)))


@given(case=penalty_cases())
def test_g_step_through_noisy_d_matches_central_differences(case):
    spec, params, _, _, _ = case
    rng = np.random.default_rng(6)
    z = rng.standard_normal((3, spec.z_size))
    noise = 0.3 * rng.standard_normal((3, spec.data_size))

    def loss(p):
        return losses.g_loss(spec.loss, gan.discriminate(spec, p, gan.generate(spec, p, z) + noise))[0]

    grads, stats = gan.g_loss_and_grads(spec, params, z, fake_noise=noise)
    assert stats.loss == loss(params)
    assert_gradients_close(grads, numerical_gradients(loss, params, grads, EPS, ORDER),
                           atol=noise_floor(max(abs(stats.loss), 1.0)))


def _config(**options):
    spec = gan.GANSpec(mlp.MLPSpec(2, (8,), 2, "tanh"), mlp.MLPSpec(2, (8,), 1, "tanh"), options.pop("loss", "minimax"))
    return train.TrainConfig(spec, batch_size=5, d_steps=2, g_steps=3, **options)


def test_noise_scale_is_constant_or_decays_linearly_to_zero():
    assert [_config(instance_noise=0.5).noise_scale(s) for s in (0, 10, 10**6)] == [0.5, 0.5, 0.5]
    assert [_config(instance_noise=0.5, instance_noise_anneal=4).noise_scale(s) for s in range(6)] == [
        0.5, 0.375, 0.25, 0.125, 0.0, 0.0]


def test_draw_inputs_appends_its_extra_draws_after_the_usual_ones():
    data = np.random.default_rng(0).standard_normal((50, 2))
    plain = train.draw_inputs(_config(), data, np.random.default_rng(1))
    rich = train.draw_inputs(_config(instance_noise=0.1, penalty=PenaltySpec("wgan-gp", 10.0), loss="wasserstein"),
                             data, np.random.default_rng(1))
    for name in ("real", "z_d", "z_g"):  # a run without the options draws exactly what it always did
        np.testing.assert_array_equal(getattr(plain, name), getattr(rich, name))
    assert plain.noise_real is None and plain.mix is None
    rng = np.random.default_rng(1)
    rng.integers(0, 50, size=(2, 5)), rng.standard_normal((2, 5, 2)), rng.standard_normal((3, 5, 2))
    np.testing.assert_array_equal(rich.noise_real, rng.standard_normal((2, 5, 2)))
    np.testing.assert_array_equal(rich.noise_fake, rng.standard_normal((2, 5, 2)))
    np.testing.assert_array_equal(rich.noise_g, rng.standard_normal((3, 5, 2)))
    np.testing.assert_array_equal(rich.mix, rng.uniform(0, 1, size=(2, 5, 1)))


def test_a_round_with_noise_and_penalty_is_its_d_and_g_updates_in_order():
    config = _config(instance_noise=0.2, instance_noise_anneal=10, penalty=PenaltySpec("roth", 2.0))
    data = np.random.default_rng(0).standard_normal((50, 2))
    state = train.TrainState.initial(config, 3)
    state = dataclasses.replace(state, step=4)  # sigma = 0.2 * (1 - 4/10) = 0.12
    inputs = train.draw_inputs(config, data, np.random.default_rng(2))
    new_state, metrics = train.train_step(config, state, inputs)

    sigma = 0.12
    params, d_opt, g_opt = state.params, state.d_opt_state, state.g_opt_state
    for i in range(2):
        params, d_opt, stats = gan.d_update(config.spec, config.d_optimizer, params, d_opt, inputs.real[i],
                                            inputs.z_d[i], real_noise=sigma * inputs.noise_real[i],
                                            fake_noise=sigma * inputs.noise_fake[i], penalty_spec=config.penalty)
    assert stats.penalty > 0 and metrics.d_penalty == stats.penalty and metrics.d_loss == stats.loss
    for i in range(3):
        params, g_opt, _ = gan.g_update(config.spec, config.g_optimizer, params, g_opt, inputs.z_g[i],
                                        fake_noise=sigma * inputs.noise_g[i])
    for k in params:
        np.testing.assert_allclose(new_state.params[k], params[k], rtol=1e-13, atol=1e-15)
    assert new_state.step == 5


def test_zero_noise_and_zero_weight_change_nothing():
    data = np.random.default_rng(0).standard_normal((50, 2))
    plain, options = _config(), _config(instance_noise=0.3, instance_noise_anneal=1, penalty=PenaltySpec("r1", 0.0))
    state = dataclasses.replace(train.TrainState.initial(plain, 0), step=1)  # annealed to 0 after 1 round
    inputs = train.draw_inputs(options, data, np.random.default_rng(1))
    a, ma = train.train_step(plain, state, inputs)
    b, mb = train.train_step(options, state, inputs)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert ma.d_loss == mb.d_loss and mb.d_penalty == 0.0


@pytest.mark.parametrize("options, message", [
    (dict(instance_noise=-1.0), "instance_noise"), (dict(instance_noise=float("inf")), "instance_noise"),
    (dict(instance_noise_anneal=-1), "instance_noise_anneal"),
    (dict(instance_noise_anneal=1.5), "instance_noise_anneal"),
    (dict(penalty=PenaltySpec("roth"), loss="wasserstein"), "logit loss")])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        _config(**options)
    with pytest.raises(TypeError, match="PenaltySpec"):
        _config(penalty="r1")


def test_missing_or_misshapen_extra_inputs_are_refused():
    config = _config(instance_noise=0.1, penalty=PenaltySpec("wgan-gp"), loss="wasserstein")
    data = np.random.default_rng(0).standard_normal((50, 2))
    good = train.draw_inputs(config, data, np.random.default_rng(1))
    state = train.TrainState.initial(config, 0)
    for change, message in [(dict(noise_fake=None), "noise_fake is missing"), (dict(mix=None), "mix is missing"),
                            (dict(noise_g=good.noise_g[:, :2]), "noise_g must have shape"),
                            (dict(mix=good.mix + 1.0), r"\[0, 1\]"),
                            (dict(noise_real=good.noise_real * np.nan), "NaN")]:
        with pytest.raises(ValueError, match=message):
            train.train_step(config, state, dataclasses.replace(good, **change))


def test_config_round_trips_and_reads_dicts_written_before_the_options():
    config = _config(instance_noise=0.25, instance_noise_anneal=100, penalty=PenaltySpec("r1", 5.0))
    assert train.TrainConfig.from_dict(config.to_dict()) == config
    legacy = {k: v for k, v in _config().to_dict().items()
              if k not in ("penalty", "instance_noise", "instance_noise_anneal")}
    assert train.TrainConfig.from_dict(legacy) == _config()


def test_backends_refuse_options_they_do_not_implement_and_the_reference_runs_them():
    config = _config(instance_noise=0.1, penalty=PenaltySpec("r1", 1.0))
    assert required_features(config) == {"instance_noise", "penalty:r1"}

    class Minimal(ReferenceBackend):
        name = "minimal"
        features = frozenset({"instance_noise"})

    with pytest.raises(ValueError, match="minimal backend does not implement penalty:r1"):
        Minimal(config)
    backend = ReferenceBackend(config)
    backend.init(0)
    inputs = train.draw_inputs(config, np.random.default_rng(0).standard_normal((20, 2)), np.random.default_rng(1))
    metrics = backend.train_step(inputs)
    expected_state, expected = train.train_step(config, train.TrainState.initial(config, 0), inputs)
    np.testing.assert_equal(metrics.to_dict(), expected.to_dict())  # NaN-aware
    for k, v in backend.export_params().items():
        np.testing.assert_array_equal(v, expected_state.params[k])
