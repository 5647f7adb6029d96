"""reference.train: determinism, purity, the documented random streams, metrics, and that training learns."""

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference import gan, optim, recipes, train
from reference.data import get_dataset
from tests.helpers.strategies import train_configs


def small_config(loss="nonsaturating", **overrides):
    return recipes.default_config("ring", 2, loss, hidden=(8, 8), batch_size=16, **overrides)


def ring_data(n=256, seed=0):
    return get_dataset("ring").sample(n, np.random.default_rng(seed))


def record(config, data, steps, seed):
    """Train and keep a copy of every round's parameters and metrics."""
    trajectory = []
    final = train.train(config, data, steps, seed,
                        on_step=lambda state, m: trajectory.append(({k: v.copy() for k, v in state.params.items()},
                                                                     m.to_dict())))
    return final, trajectory


def metrics_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) if isinstance(a[k], float) and math.isnan(a[k]) else a[k] == b[k]
        for k in a)


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wasserstein"])
def test_same_seed_gives_a_bitwise_identical_trajectory(loss):
    config, data = small_config(loss), ring_data()
    final_a, run_a = record(config, data, 6, seed=11)
    final_b, run_b = record(config, data, 6, seed=11)
    assert len(run_a) == len(run_b) == 6
    for (params_a, metrics_a), (params_b, metrics_b) in zip(run_a, run_b, strict=True):
        assert list(params_a) == list(params_b)
        assert all(np.array_equal(params_a[k], params_b[k]) for k in params_a)
        assert metrics_equal(metrics_a, metrics_b), (metrics_a, metrics_b)
    for opt_a, opt_b in ((final_a.d_opt_state, final_b.d_opt_state), (final_a.g_opt_state, final_b.g_opt_state)):
        assert list(opt_a) == list(opt_b) and all(np.array_equal(opt_a[k], opt_b[k]) for k in opt_a)
    assert final_a.step == final_b.step == 6


def test_different_seeds_give_different_runs():
    config, data = small_config(), ring_data()
    a, b = train.train(config, data, 3, seed=1), train.train(config, data, 3, seed=2)
    assert all(not np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(gan.init_params(config.spec, 1)["D.0.weight"],
                              gan.init_params(config.spec, 2)["D.0.weight"])


def test_train_is_train_step_on_the_documented_streams():
    """train(config, data, n, seed) = init from seed, then n train_steps on draw_inputs(default_rng([seed, 2]))."""
    config, data = small_config(d_steps=2, g_steps=3), ring_data()
    state = train.TrainState.initial(config, 5)
    rng = np.random.default_rng([5, 2])
    for _ in range(4):
        state, _ = train.train_step(config, state, train.draw_inputs(config, data, rng))
    final = train.train(config, data, 4, seed=5)
    assert all(np.array_equal(final.params[k], state.params[k]) for k in state.params)
    assert final.step == 4


def test_draw_inputs_draw_order():
    config, data = small_config(d_steps=3, g_steps=2), ring_data()
    inputs = train.draw_inputs(config, data, np.random.default_rng(9))
    rng = np.random.default_rng(9)
    index = rng.integers(0, len(data), size=(3, 16))
    np.testing.assert_array_equal(inputs.real, data[index])
    np.testing.assert_array_equal(inputs.z_d, rng.standard_normal((3, 16, 2)))
    np.testing.assert_array_equal(inputs.z_g, rng.standard_normal((2, 16, 2)))
    inputs.check(config)


@settings(max_examples=max(10, settings.default.max_examples // 3))
@given(config=train_configs(), seed=st.integers(0, 1000))
def test_train_step_is_pure(config, seed):
    state = train.TrainState.initial(config, seed)
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((20, config.spec.data_size))
    state, _ = train.train_step(config, state, train.draw_inputs(config, data, rng))  # non-zero optimizer state
    snapshot = copy.deepcopy(state)
    ids = {k: id(v) for k, v in state.params.items()}
    inputs = train.draw_inputs(config, data, rng)
    inputs_copy = copy.deepcopy(inputs)
    new_state, _ = train.train_step(config, state, inputs)
    assert new_state is not state and new_state.step == state.step + 1 == snapshot.step + 1
    for mine, kept in ((state.params, snapshot.params), (state.d_opt_state, snapshot.d_opt_state),
                       (state.g_opt_state, snapshot.g_opt_state)):
        assert list(mine) == list(kept) and all(np.array_equal(mine[k], kept[k]) for k in kept)
    assert ids == {k: id(v) for k, v in state.params.items()}
    for field in ("real", "z_d", "z_g"):
        np.testing.assert_array_equal(getattr(inputs, field), getattr(inputs_copy, field))


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wasserstein"])
def test_metrics_are_sensible_and_match_the_last_updates(loss):
    config, data = small_config(loss), ring_data()
    state = train.TrainState.initial(config, 0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        inputs = train.draw_inputs(config, data, rng)
        new_state, metrics = train.train_step(config, state, inputs)
        # replay the round to get the last D update's and the last G update's stats
        params, d_opt, g_opt = state.params, state.d_opt_state, state.g_opt_state
        for i in range(config.d_steps):
            params, d_opt, d_stats = gan.d_update(config.spec, config.d_optimizer, params, d_opt, inputs.real[i],
                                                  inputs.z_d[i], config.clip_value)
        _, _, g_stats = gan.g_update(config.spec, config.g_optimizer, params, g_opt, inputs.z_g[0])
        state = new_state
        assert metrics.step == state.step
        for value in (metrics.d_loss, metrics.g_loss, metrics.d_grad_norm, metrics.g_grad_norm):
            assert math.isfinite(value)
        assert metrics.d_grad_norm >= 0 and metrics.g_grad_norm >= 0
        assert metrics.d_loss == d_stats.loss and metrics.g_loss == g_stats.loss
        if loss == "wasserstein":
            assert math.isnan(metrics.d_acc_real) and math.isnan(metrics.d_acc_fake)
            assert metrics.critic_gap == pytest.approx(d_stats.real_out.mean() - d_stats.fake_out.mean(), rel=1e-14)
            assert metrics.critic_gap == pytest.approx(-metrics.d_loss, rel=1e-12)  # gap = -(critic loss)
        else:
            assert math.isnan(metrics.critic_gap)
            assert 0.0 <= metrics.d_acc_real <= 1.0 and 0.0 <= metrics.d_acc_fake <= 1.0
            assert metrics.d_acc_real == np.mean(d_stats.real_out > 0)
            assert metrics.d_acc_fake == np.mean(d_stats.fake_out < 0)
            assert metrics.d_loss > 0  # a cross-entropy
    json.dumps(metrics.to_dict())  # plain floats and ints


@given(config=train_configs())
def test_config_round_trips_through_json(config):
    assert train.TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_initial_state_is_fresh():
    config = small_config(d_optimizer=optim.OptimizerSpec("rmsprop", momentum=0.5))
    state = train.TrainState.initial(config, 3)
    assert state.step == 0
    assert list(state.d_opt_state) == optim.state_names(config.d_optimizer, gan.network(state.params, "D"))
    assert list(state.g_opt_state) == optim.state_names(config.g_optimizer, gan.network(state.params, "G"))
    assert all(not np.any(v) for v in state.d_opt_state.values())


@pytest.mark.slow
def test_training_learns_the_1d_gaussian():
    """The non-saturating GAN on N(4, 1.25^2): after training, G's samples have about the right mean and spread."""
    dataset = get_dataset("gaussian1d")
    data = dataset.sample(4096, np.random.default_rng(0))
    config = recipes.default_config("gaussian1d", 1, hidden=(16, 16), batch_size=64)
    z = np.random.default_rng(1).standard_normal((4096, config.spec.z_size))
    before = gan.generate(config.spec, gan.init_params(config.spec, 0), z)
    assert abs(before.mean() - 4.0) > 2.0
    state = train.train(config, data, 1500, seed=0)
    samples = gan.generate(config.spec, state.params, z)
    assert abs(samples.mean() - 4.0) < 0.4, samples.mean()  # seeds 0-3 give 3.78 .. 4.25
    assert 0.6 < samples.std() < 1.9, samples.std()  # seeds 0-3 give 0.71 .. 1.24 (target 1.25)
