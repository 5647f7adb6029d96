"""reference.gan and train_step: D-step and G-step gradients, freezing, WGAN clipping, k and m."""

from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from reference import gan, losses, mlp, optim, train
from tests.helpers.finite_diff import assert_gradients_close, noise_floor, numerical_gradients
from tests.helpers.strategies import KINKED_ACTIVATIONS, gan_specs, optimizer_specs, seeds

# Fourth-order central differences with step 1e-4 (error ~1e-12 |loss|): some gradient entries of these small
# networks are 1e-5 or exactly 0 (a WGAN critic's output bias), far below the loss itself.
EPS, ORDER = 1e-4, 4
KINK_MARGIN = 1e-3  # perturbations reach 2e-4 * max(1, |p|) and spread downstream: stay further from the kink
SMOOTHISH = ("tanh", "leaky_relu", "sigmoid")  # leaky_relu is kept away from its kink by `assume`


def min_abs_preactivation(spec: mlp.MLPSpec, cache) -> float:
    kinked = [abs(h).min() for i, (_, h) in enumerate(cache) if spec.activation(i).name in KINKED_ACTIVATIONS]
    return float(min(kinked, default=np.inf))


def clear_of_kinks(spec: gan.GANSpec, params, x_real, z) -> bool:
    """True when no ReLU / LeakyReLU input in G(z), D(x_real) or D(G(z)) is within KINK_MARGIN of 0."""
    x_fake, g_cache = mlp.forward(spec.generator, params, "G", z)
    _, d_real_cache = mlp.forward(spec.discriminator, params, "D", x_real)
    _, d_fake_cache = mlp.forward(spec.discriminator, params, "D", x_fake)
    return min(min_abs_preactivation(spec.generator, g_cache),
               min_abs_preactivation(spec.discriminator, d_real_cache),
               min_abs_preactivation(spec.discriminator, d_fake_cache)) > KINK_MARGIN


def d_loss_forward(spec, params, x_real, z):
    """D's loss by forward passes only: the independent side of the comparison."""
    x_fake = mlp.forward(spec.generator, params, "G", z)[0]
    real_out = mlp.forward(spec.discriminator, params, "D", x_real)[0]
    fake_out = mlp.forward(spec.discriminator, params, "D", x_fake)[0]
    return losses.d_loss(spec.loss, real_out, fake_out)[0]


def g_loss_forward(spec, params, z):
    fake_out = mlp.forward(spec.discriminator, params, "D", mlp.forward(spec.generator, params, "G", z)[0])[0]
    return losses.g_loss(spec.loss, fake_out)[0]


def gan_and_batches(loss=None, max_batch=3):
    """(spec, params, x_real, z) with smooth-ish activations; params are the reference init from a seed."""
    @st.composite
    def build(draw):
        spec = draw(gan_specs(loss=loss, max_depth=2, max_width=5, hidden_activations=SMOOTHISH))
        rng = np.random.default_rng(draw(seeds))
        params = gan.init_params(spec, int(rng.integers(2**31)))
        b_real, b_fake = draw(st.integers(1, max_batch)), draw(st.integers(1, max_batch))
        return spec, params, rng.standard_normal((b_real, spec.data_size)), rng.standard_normal((b_fake, spec.z_size))
    return build()


# ----- Gradients of the D step and the G step against central differences -----

@pytest.mark.parametrize("loss", losses.LOSSES)
@given(case=gan_and_batches())
def test_d_step_gradient_matches_central_differences(loss, case):
    spec, params, x_real, z = case
    spec = gan.GANSpec(spec.generator, spec.discriminator, loss)
    assume(clear_of_kinks(spec, params, x_real, z))
    grads, stats = gan.d_loss_and_grads(spec, params, x_real, z)
    assert list(grads) == list(mlp.param_shapes(spec.discriminator, "D"))  # D only, in interchange order

    numeric = numerical_gradients(lambda p: d_loss_forward(spec, p, x_real, z), params, grads, EPS, ORDER)
    assert_gradients_close(grads, numeric, atol=noise_floor(stats.loss))
    assert stats.grad_norm == pytest.approx(np.sqrt(sum(np.sum(g**2) for g in grads.values())), rel=1e-14)
    assert stats.loss == d_loss_forward(spec, params, x_real, z)


@pytest.mark.parametrize("loss", losses.LOSSES)
@given(case=gan_and_batches())
def test_g_step_gradient_through_d_matches_central_differences(loss, case):
    spec, params, x_real, z = case
    spec = gan.GANSpec(spec.generator, spec.discriminator, loss)
    assume(clear_of_kinks(spec, params, x_real, z))
    grads, stats = gan.g_loss_and_grads(spec, params, z)
    assert list(grads) == list(mlp.param_shapes(spec.generator, "G"))  # G only: D's gradients are thrown away
    assert stats.real_out is None

    numeric = numerical_gradients(lambda p: g_loss_forward(spec, p, z), params, grads, EPS, ORDER)
    assert_gradients_close(grads, numeric, atol=noise_floor(stats.loss))
    np.testing.assert_array_equal(stats.fake_out, gan.discriminate(spec, params, gan.generate(spec, params, z)))


# ----- Freezing -----

@given(case=gan_and_batches(), opt=optimizer_specs())
def test_d_update_leaves_g_untouched_and_g_update_leaves_d_untouched(case, opt):
    spec, params, x_real, z = case
    snapshot = {k: v.copy() for k, v in params.items()}
    d_state = optim.init_state(opt, gan.network(params, "D"))
    after_d, new_d_state, d_stats = gan.d_update(spec, opt, params, d_state, x_real, z)
    assert list(after_d) == list(params)
    for name in gan.network(params, "G"):
        assert after_d[name] is params[name]
    if d_stats.grad_norm > 1e-6:  # (a D whose units are all dead has nothing to learn from)
        assert any(not np.array_equal(after_d[name], params[name]) for name in gan.network(params, "D"))
    assert new_d_state["step"] == 1.0

    g_state = optim.init_state(opt, gan.network(params, "G"))
    after_g, new_g_state, g_stats = gan.g_update(spec, opt, after_d, g_state, z)
    assert list(after_g) == list(params)
    for name in gan.network(params, "D"):
        assert after_g[name] is after_d[name]
    if g_stats.grad_norm > 1e-6:
        assert any(not np.array_equal(after_g[name], after_d[name]) for name in gan.network(params, "G"))
    assert new_g_state["step"] == 1.0
    for name, value in snapshot.items():  # the input dict and its arrays are never written to
        np.testing.assert_array_equal(params[name], value)


# ----- WGAN weight clipping -----

@given(clip=st.floats(1e-3, 1.0), k=st.integers(1, 4), seed=seeds,
       opt=optimizer_specs(names=("rmsprop", "sgd"), lr_range=(1e-2, 1.0)))
def test_clipping_bounds_every_critic_parameter_after_every_d_update(clip, k, seed, opt):
    spec = gan.GANSpec(mlp.MLPSpec(2, (5,), 2, "relu"), mlp.MLPSpec(2, (5,), 1, "relu"), "wasserstein")
    config = train.TrainConfig(spec, d_optimizer=opt, g_optimizer=opt, batch_size=8, d_steps=k, g_steps=1,
                               clip_value=clip)
    state = train.TrainState.initial(config, seed % 1000)
    rng = np.random.default_rng(seed)
    inputs = train.StepInputs(rng.standard_normal((k, 8, 2)), rng.standard_normal((k, 8, 2)),
                              rng.standard_normal((1, 8, 2)))
    seen, d_update = [], gan.d_update

    def spy(*args, **kwargs):
        result = d_update(*args, **kwargs)
        seen.append(result[0])
        return result

    with mock.patch.object(train.gan, "d_update", side_effect=spy) as patched:
        new_state, _ = train.train_step(config, state, inputs)
    assert patched.call_count == k and len(seen) == k
    for params in [*seen, new_state.params]:
        for name, value in gan.network(params, "D").items():
            assert np.all(np.abs(value) <= clip), name


def test_clipping_clamps_weights_and_biases_and_only_when_asked():
    spec = gan.GANSpec(mlp.MLPSpec(1, (), 1), mlp.MLPSpec(1, (3,), 1, "tanh"), "wasserstein")
    params = gan.init_params(spec, 0)
    params["D.0.bias"] = np.array([0.5, -0.5, 0.001])
    params["G.0.weight"] = np.array([[5.0]])
    opt = optim.OptimizerSpec("sgd", lr=1e-9)
    state = optim.init_state(opt, gan.network(params, "D"))
    x, z = np.ones((2, 1)), np.ones((2, 1))
    clipped, _, _ = gan.d_update(spec, opt, params, state, x, z, clip_value=0.01)
    np.testing.assert_allclose(clipped["D.0.bias"], [0.01, -0.01, 0.001], rtol=1e-6)
    assert clipped["G.0.weight"][0, 0] == 5.0  # G is not the critic
    unclipped, _, _ = gan.d_update(spec, opt, params, state, x, z)
    assert np.abs(unclipped["D.0.bias"]).max() > 0.49
    np.testing.assert_array_equal(gan.clip_weights({"a": np.array([-2.0, 0.3, 2.0])}, 1.0)["a"], [-1.0, 0.3, 1.0])


# ----- k D updates, then m G updates -----

def small_config(k, m, loss="nonsaturating", opt=None):
    spec = gan.GANSpec(mlp.MLPSpec(2, (4,), 2, "tanh"), mlp.MLPSpec(2, (4,), 1, "tanh"), loss)
    opt = opt or optim.OptimizerSpec("adam", lr=1e-2)
    return train.TrainConfig(spec, d_optimizer=opt, g_optimizer=opt, batch_size=5, d_steps=k, g_steps=m,
                             clip_value=0.05 if loss == "wasserstein" else None)


@given(k=st.integers(1, 4), m=st.integers(1, 4), loss=st.sampled_from(losses.LOSSES), seed=seeds)
def test_train_step_is_k_d_updates_then_m_g_updates(k, m, loss, seed):
    """train_step equals calling d_update k times (real[i], z_d[i]) then g_update m times (z_g[j]), bit for bit."""
    config = small_config(k, m, loss)
    state = train.TrainState.initial(config, seed % 1000)
    rng = np.random.default_rng(seed)
    inputs = train.StepInputs(rng.standard_normal((k, 5, 2)), rng.standard_normal((k, 5, 2)),
                              rng.standard_normal((m, 5, 2)))
    new_state, metrics = train.train_step(config, state, inputs)

    params, d_opt, g_opt = state.params, state.d_opt_state, state.g_opt_state
    for i in range(k):
        params, d_opt, d_stats = gan.d_update(config.spec, config.d_optimizer, params, d_opt, inputs.real[i],
                                              inputs.z_d[i], config.clip_value)
    for j in range(m):
        params, g_opt, g_stats = gan.g_update(config.spec, config.g_optimizer, params, g_opt, inputs.z_g[j])
    for name in params:
        np.testing.assert_array_equal(new_state.params[name], params[name])
    assert new_state.d_opt_state["step"] == k and new_state.g_opt_state["step"] == m
    assert new_state.step == state.step + 1
    assert metrics.d_loss == d_stats.loss and metrics.g_loss == g_stats.loss
    assert metrics.d_grad_norm == d_stats.grad_norm and metrics.g_grad_norm == g_stats.grad_norm


@pytest.mark.parametrize(("k", "m"), [(1, 1), (3, 1), (2, 3), (5, 2)])
def test_every_input_batch_is_consumed(k, m):
    """Changing real[i] or z_d[i] for any i < k changes D; changing z_g[j] for any j < m changes G only."""
    config = small_config(k, m)
    state = train.TrainState.initial(config, 0)
    rng = np.random.default_rng(1)
    inputs = train.StepInputs(rng.standard_normal((k, 5, 2)), rng.standard_normal((k, 5, 2)),
                              rng.standard_normal((m, 5, 2)))
    base, _ = train.train_step(config, state, inputs)
    for field, n in (("real", k), ("z_d", k), ("z_g", m)):
        for i in range(n):
            changed = {f: getattr(inputs, f).copy() for f in ("real", "z_d", "z_g")}
            changed[field][i] += 0.1
            result, _ = train.train_step(config, state, train.StepInputs(**changed))
            d_moved = any(not np.array_equal(result.params[p], base.params[p]) for p in gan.network(base.params, "D"))
            g_moved = any(not np.array_equal(result.params[p], base.params[p]) for p in gan.network(base.params, "G"))
            assert g_moved, (field, i)  # every input reaches G: through D's updates or directly
            assert d_moved == (field != "z_g"), (field, i)  # G's noise cannot reach D: D is updated first


@pytest.mark.parametrize(("k", "m", "rounds"), [(1, 1, 3), (5, 1, 2), (2, 4, 3)])
def test_optimizer_step_counters_count_updates(k, m, rounds):
    config = small_config(k, m, opt=optim.OptimizerSpec("rmsprop", lr=1e-3))
    state = train.TrainState.initial(config, 0)
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        state, metrics = train.train_step(config, state, train.draw_inputs(config, rng.standard_normal((50, 2)), rng))
    assert state.d_opt_state["step"] == k * rounds and state.g_opt_state["step"] == m * rounds
    assert state.step == rounds and metrics.step == rounds
