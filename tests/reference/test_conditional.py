"""Conditional GANs in the reference: one-hot labels on both networks' inputs, gradients, inputs, refusals."""

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from backends.interface import ReferenceBackend, required_features
from reference import gan, losses, mlp, train
from reference.penalty import PenaltySpec
from tests.helpers.finite_diff import assert_gradients_close, noise_floor, numerical_gradients
from tests.reference.test_gan_steps import EPS, ORDER, SMOOTHISH, min_abs_preactivation


def conditional_spec(z=2, data=2, classes=3, hidden=(5,), act="tanh", loss="nonsaturating"):
    return gan.GANSpec(mlp.MLPSpec(z + classes, hidden, data, act), mlp.MLPSpec(data + classes, hidden, 1, act),
                       loss, num_classes=classes)


@st.composite
def conditional_cases(draw):
    classes = draw(st.integers(2, 4))
    spec = conditional_spec(draw(st.integers(1, 3)), draw(st.integers(1, 3)), classes,
                            tuple(draw(st.lists(st.integers(1, 5), max_size=2))), draw(st.sampled_from(SMOOTHISH)),
                            draw(st.sampled_from(losses.LOSSES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    b = draw(st.integers(1, 4))
    params = gan.init_params(spec, int(rng.integers(2**31)))
    x_real, z = rng.standard_normal((b, spec.data_size)), rng.standard_normal((b, spec.z_size))
    real_labels, fake_labels = rng.integers(0, classes, b), rng.integers(0, classes, b)
    for net, x, y in [("G", z, fake_labels), ("D", x_real, real_labels)]:
        net_spec = spec.generator if net == "G" else spec.discriminator
        cache = mlp.forward(net_spec, params, net, gan.with_labels(spec, x, y, "x"))[1]
        assume(min_abs_preactivation(net_spec, cache) > 1e-2)
    return spec, params, x_real, z, real_labels, fake_labels


def concat(x, labels, classes):  # the independent side: one-hot by comparison, not by indexing an identity
    return np.concatenate([x, (labels[:, None] == np.arange(classes)[None, :]).astype(float)], axis=1)


@given(case=conditional_cases())
def test_d_step_gradient_with_labels_matches_central_differences(case):
    spec, params, x_real, z, yr, yf = case

    def loss(p):
        x_fake = mlp.forward(spec.generator, p, "G", concat(z, yf, spec.num_classes))[0]
        real_out = mlp.forward(spec.discriminator, p, "D", concat(x_real, yr, spec.num_classes))[0]
        fake_out = mlp.forward(spec.discriminator, p, "D", concat(x_fake, yf, spec.num_classes))[0]
        return losses.d_loss(spec.loss, real_out, fake_out)[0]

    grads, stats = gan.d_loss_and_grads(spec, params, x_real, z, real_labels=yr, fake_labels=yf)
    assert stats.loss == pytest.approx(loss(params), rel=1e-13)
    assert_gradients_close(grads, numerical_gradients(loss, params, grads, EPS, ORDER),
                           atol=noise_floor(max(abs(stats.loss), 1.0)))


@given(case=conditional_cases())
def test_g_step_gradient_through_labelled_d_matches_central_differences(case):
    spec, params, _, z, _, yf = case

    def loss(p):
        x_fake = mlp.forward(spec.generator, p, "G", concat(z, yf, spec.num_classes))[0]
        fake_out = mlp.forward(spec.discriminator, p, "D", concat(x_fake, yf, spec.num_classes))[0]
        return losses.g_loss(spec.loss, fake_out)[0]

    grads, stats = gan.g_loss_and_grads(spec, params, z, labels=yf)
    assert list(grads) == list(mlp.param_shapes(spec.generator, "G"))
    assert_gradients_close(grads, numerical_gradients(loss, params, grads, EPS, ORDER),
                           atol=noise_floor(max(abs(stats.loss), 1.0)))


def test_a_linear_conditional_generator_adds_the_label_row():
    # G([z, onehot(y)]) = z @ W[:z] + W[z + y] + b: with W[:z] = 0 it outputs the label's row of W plus b
    spec = conditional_spec(z=2, data=2, classes=3, hidden=())
    params = gan.init_params(spec, 0)
    params["G.0.weight"][:2] = 0.0
    labels = np.array([2, 0, 1, 2])
    out = gan.generate(spec, params, np.random.default_rng(0).standard_normal((4, 2)), labels)
    np.testing.assert_array_equal(out, params["G.0.weight"][2 + labels] + params["G.0.bias"])


def test_spec_sizes_validation_and_round_trip():
    spec = conditional_spec(z=4, data=3, classes=5)
    assert (spec.z_size, spec.data_size) == (4, 3)
    assert gan.GANSpec.from_dict(spec.to_dict()) == spec
    legacy = {k: v for k, v in gan.GANSpec(mlp.MLPSpec(2, (), 2), mlp.MLPSpec(2, (), 1)).to_dict().items()
              if k != "num_classes"}
    assert gan.GANSpec.from_dict(legacy).num_classes == 0
    for classes, message in [(1, ">= 2"), (-2, ">= 2"), (True, ">= 2"), (2.0, ">= 2")]:
        with pytest.raises(ValueError, match=message):
            gan.GANSpec(mlp.MLPSpec(4, (), 2), mlp.MLPSpec(4, (), 1), num_classes=classes)
    with pytest.raises(ValueError, match="more than the 4 one-hot label inputs"):
        gan.GANSpec(mlp.MLPSpec(4, (), 2), mlp.MLPSpec(6, (), 1), num_classes=4)
    with pytest.raises(ValueError, match="plus 2 label inputs"):
        gan.GANSpec(mlp.MLPSpec(4, (), 3), mlp.MLPSpec(4, (), 1), num_classes=2)


def test_bad_labels_are_refused_by_name():
    spec = conditional_spec()
    plain = gan.GANSpec(mlp.MLPSpec(2, (), 2), mlp.MLPSpec(2, (), 1))
    params, z = gan.init_params(spec, 0), np.zeros((3, 2))
    for labels, error, message in [(None, ValueError, "needs class labels"),
                                   (np.array([0, 1]), ValueError, r"shape \(3,\)"),
                                   (np.array([0, 1, 3]), ValueError, r"\[0, 3\)"),
                                   (np.array([0, 1, -1]), ValueError, r"\[0, 3\)"),
                                   (np.array([0.0, 1.0, 2.0]), TypeError, "integer")]:
        with pytest.raises(error, match=message):
            gan.generate(spec, params, z, labels)
    with pytest.raises(ValueError, match="unconditional"):
        gan.generate(plain, gan.init_params(plain, 0), z, np.array([0, 1, 1]))


def _config(**kw):
    return train.TrainConfig(conditional_spec(), batch_size=4, d_steps=2, g_steps=2, **kw)


def test_draw_inputs_takes_real_labels_from_the_data_and_draws_the_fake_ones_last():
    config, rng_data = _config(), np.random.default_rng(0)
    data, labels = rng_data.standard_normal((30, 2)), rng_data.integers(0, 3, 30)
    inputs = train.draw_inputs(config, data, np.random.default_rng(5), labels)
    rng = np.random.default_rng(5)
    index = rng.integers(0, 30, size=(2, 4))
    rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 2))
    np.testing.assert_array_equal(inputs.real, data[index])
    np.testing.assert_array_equal(inputs.labels_real, labels[index])
    np.testing.assert_array_equal(inputs.labels_fake, rng.integers(0, 3, size=(2, 4)))
    np.testing.assert_array_equal(inputs.labels_g, rng.integers(0, 3, size=(2, 4)))
    with pytest.raises(ValueError, match="needs labels"):
        train.draw_inputs(config, data, np.random.default_rng(5))
    with pytest.raises(ValueError, match="unconditional"):
        plain = train.TrainConfig(gan.GANSpec(mlp.MLPSpec(2, (), 2), mlp.MLPSpec(2, (), 1)))
        train.draw_inputs(plain, data, np.random.default_rng(5), labels)


def test_a_conditional_round_is_its_labelled_updates_and_missing_labels_are_refused():
    config = _config(instance_noise=0.1)
    rng = np.random.default_rng(1)
    data, labels = rng.standard_normal((30, 2)), rng.integers(0, 3, 30)
    inputs = train.draw_inputs(config, data, np.random.default_rng(2), labels)
    state = train.TrainState.initial(config, 0)
    new_state, _ = train.train_step(config, state, inputs)
    params, d_opt, g_opt = state.params, state.d_opt_state, state.g_opt_state
    for i in range(2):
        params, d_opt, _ = gan.d_update(config.spec, config.d_optimizer, params, d_opt, inputs.real[i], inputs.z_d[i],
                                        real_noise=0.1 * inputs.noise_real[i], fake_noise=0.1 * inputs.noise_fake[i],
                                        real_labels=inputs.labels_real[i], fake_labels=inputs.labels_fake[i])
    for i in range(2):
        params, g_opt, _ = gan.g_update(config.spec, config.g_optimizer, params, g_opt, inputs.z_g[i],
                                        fake_noise=0.1 * inputs.noise_g[i], labels=inputs.labels_g[i])
    for k in params:
        np.testing.assert_array_equal(new_state.params[k], params[k])
    for change, message in [(dict(labels_g=None), "labels_g is missing"),
                            (dict(labels_fake=inputs.labels_fake[:, :2]), "labels_fake must be an array of shape"),
                            (dict(labels_real=inputs.labels_real + 3), r"\[0, 3\)")]:
        with pytest.raises((ValueError, TypeError), match=message):
            train.train_step(config, state, dataclasses.replace(inputs, **change))


def test_penalties_are_refused_for_conditional_gans_and_backends_need_the_feature():
    with pytest.raises(ValueError, match="not implemented for conditional"):
        _config(penalty=PenaltySpec("r1"))
    config = _config()
    assert required_features(config) == {"conditional"}
    backend = ReferenceBackend(config)
    backend.init(0)
    out = backend.generate(np.zeros((2, 2)), labels=np.array([0, 2]))
    np.testing.assert_array_equal(out, gan.generate(config.spec, gan.init_params(config.spec, 0), np.zeros((2, 2)),
                                                    np.array([0, 2])))

    class Plain(ReferenceBackend):
        name = "plain"
        features = frozenset()

    with pytest.raises(ValueError, match="plain backend does not implement conditional"):
        Plain(config)
