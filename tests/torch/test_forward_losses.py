"""Forward passes, losses and gradients of the torch backend against the NumPy reference (float64, ~1e-10)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.interface import ReferenceBackend
from backends.torch import TorchBackend
from reference import losses, train
from tests.helpers import strategies as hs

from .common import LOSSES, backends_pair, make_config

TOL64 = 1e-10


def _pair_for(spec, seed):
    config = train.TrainConfig(spec)
    ref, tb = ReferenceBackend(config), TorchBackend(config, device="cpu")
    ref.init(seed)
    tb.init(seed)
    return ref, tb


@given(spec=hs.gan_specs(), seed=hs.seeds, data=st.data())
def test_generate_and_discriminate_match_reference(spec, seed, data):
    ref, tb = _pair_for(spec, seed)
    z = data.draw(hs.batches(spec.z_size, max_abs=3.0), label="z")
    x = data.draw(hs.batches(spec.data_size, max_abs=3.0), label="x")
    g_ref, g_torch = ref.generate(z), tb.generate(z)
    assert g_torch.dtype == np.float64 and g_torch.shape == (len(z), spec.data_size)
    np.testing.assert_allclose(g_torch, g_ref, rtol=TOL64, atol=TOL64)
    d_ref, d_torch = ref.discriminate(x), tb.discriminate(x)
    assert d_torch.shape == (len(x), 1)
    np.testing.assert_allclose(d_torch, d_ref, rtol=TOL64, atol=TOL64)


def test_init_gives_reference_parameters_bitwise():
    ref, tb = backends_pair(make_config(), seed=11)
    for name, value in ref.export_params().items():
        assert tb.export_params()[name].tobytes() == value.tobytes(), name


@pytest.mark.parametrize("loss", LOSSES)
@given(data=st.data())
def test_loss_values_and_gradients_match_reference(loss, data):
    """Logits from tiny to +-1e4: equal values and gradients, every one finite."""
    real = data.draw(hs.logits(), label="real")
    fake = data.draw(hs.logits(), label="fake")
    tb = TorchBackend(make_config(loss), device="cpu")
    value, grad_real, grad_fake = tb.d_loss(real, fake)
    ref_value, ref_real, ref_fake = losses.d_loss(loss, real, fake)
    assert np.isfinite(value) and np.all(np.isfinite(grad_real)) and np.all(np.isfinite(grad_fake))
    np.testing.assert_allclose(value, ref_value, rtol=TOL64, atol=TOL64)
    np.testing.assert_allclose(grad_real, ref_real, rtol=TOL64, atol=1e-15)
    np.testing.assert_allclose(grad_fake, ref_fake, rtol=TOL64, atol=1e-15)
    value, grad = tb.g_loss(fake)
    ref_value, ref_grad = losses.g_loss(loss, fake)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, ref_value, rtol=TOL64, atol=TOL64)
    np.testing.assert_allclose(grad, ref_grad, rtol=TOL64, atol=1e-15)


@pytest.mark.parametrize("loss", LOSSES)
def test_losses_at_extreme_logits(loss):
    """The values a naive log(sigmoid) would turn into inf/NaN: exact answers from the identities."""
    tb = TorchBackend(make_config(loss), device="cpu")
    big = np.array([[1e4], [-1e4]])
    value, grad_real, grad_fake = tb.d_loss(big, big)
    if loss == "wasserstein":
        assert value == 0.0
        np.testing.assert_array_equal(grad_real, [[-0.5], [-0.5]])
    else:
        # softplus(-1e4) + softplus(1e4) on the real side, the same on the fake side: (0 + 1e4) / 2 each
        assert value == pytest.approx(1e4)
        np.testing.assert_allclose(grad_real, [[0.0], [-0.5]], atol=1e-300)
        np.testing.assert_allclose(grad_fake, [[0.5], [0.0]], atol=1e-300)
    g_value, g_grad = tb.g_loss(np.array([[-1e4]]))
    expected = {"minimax": (-0.0, -0.0), "nonsaturating": (1e4, -1.0), "wasserstein": (1e4, -1.0)}[loss]
    assert g_value == pytest.approx(expected[0], abs=1e-300)
    assert g_grad[0, 0] == pytest.approx(expected[1], abs=1e-300)


@given(config=hs.train_configs(max_batch=6), seed=hs.seeds, data=st.data())
def test_d_and_g_gradients_match_reference(config, seed, data):
    ref, tb = ReferenceBackend(config), TorchBackend(config, device="cpu")
    ref.init(seed)
    tb.init(seed)
    spec = config.spec
    x = data.draw(hs.normal_arrays((config.batch_size, spec.data_size)), label="x")
    z = data.draw(hs.normal_arrays((config.batch_size, spec.z_size)), label="z")
    for (loss_ref, grads_ref), (loss_t, grads_t) in [(ref.d_grads(x, z), tb.d_grads(x, z)),
                                                     (ref.g_grads(z), tb.g_grads(z))]:
        np.testing.assert_allclose(loss_t, loss_ref, rtol=TOL64, atol=TOL64)
        assert list(grads_t) == list(grads_ref)
        for name in grads_ref:
            assert grads_t[name].dtype == np.float64 and grads_t[name].shape == grads_ref[name].shape
            np.testing.assert_allclose(grads_t[name], grads_ref[name], rtol=1e-9, atol=TOL64, err_msg=name)


def test_grads_do_not_change_state():
    """d_grads / g_grads leave parameters, optimizer state and the .grad fields alone."""
    config = make_config("minimax", "adam")
    _, tb = backends_pair(config, seed=3)
    before = tb.export_params()
    rng = np.random.default_rng(0)
    x, z = rng.standard_normal((8, 2)), rng.standard_normal((8, 3))
    tb.d_grads(x, z)
    tb.g_grads(z)
    after = tb.export_params()
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)
    assert all(p.grad is None for p in [*tb.G.parameters(), *tb.D.parameters()])
    assert all(p.requires_grad for p in tb.D.parameters())
    assert tb.export_optimizer_state()[0]["step"] == 0
