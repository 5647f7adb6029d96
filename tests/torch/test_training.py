"""Training rounds of the torch backend against the reference, chunked training, freezing and clipping."""

import numpy as np
import pytest
import torch
from hypothesis import given

from backends.interface import ReferenceBackend
from backends.torch import TorchBackend
from reference import train
from tests.helpers import strategies as hs

from .common import (
    LOSSES,
    OPTIMIZERS,
    assert_dicts_close,
    assert_dicts_equal,
    backends_pair,
    draw_chunk,
    make_config,
    max_rel_diff,
    metrics_close,
    rounds_inputs,
    toy_data,
)

TOL64 = 1e-10


def _train_both(config, rounds, seed=0, dtype="float64", **torch_kwargs):
    ref, tb = backends_pair(config, seed=seed, dtype=dtype, **torch_kwargs)
    data = toy_data(config)
    pairs = []
    for inputs in rounds_inputs(data, *draw_chunk(config, len(data), rounds, seed)):
        pairs.append((ref.train_step(inputs), tb.train_step(inputs)))
    return ref, tb, pairs


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("loss", LOSSES)
def test_rounds_match_reference_float64(loss, opt):
    """8 rounds of k = 2 D and m = 2 G updates: parameters, both optimizer states and every metric ~1e-10."""
    ref, tb, pairs = _train_both(make_config(loss, opt), rounds=8)
    for m_ref, m_torch in pairs:
        metrics_close(m_ref, m_torch, TOL64)
    assert tb.step == ref.step == 8
    assert max_rel_diff(ref.export_params(), tb.export_params()) < TOL64
    for s_ref, s_torch in zip(ref.export_optimizer_state(), tb.export_optimizer_state(), strict=True):
        assert list(s_ref) == list(s_torch)
        assert float(s_torch["step"]) == float(s_ref["step"])
        assert max_rel_diff(s_ref, s_torch) < TOL64


@given(config=hs.train_configs(max_batch=6), seed=hs.seeds)
def test_random_configs_match_reference_float64(config, seed):
    """Any architecture, activation, loss, optimizer, k, m and clip value: 3 rounds agree with the reference."""
    ref, tb, pairs = _train_both(config, rounds=3, seed=seed % 1000)
    for m_ref, m_torch in pairs:
        metrics_close(m_ref, m_torch, 1e-8)
    assert max_rel_diff(ref.export_params(), tb.export_params()) < 1e-9


@pytest.mark.parametrize("opt", ["adam", "sgd_momentum", "rmsprop_momentum"])
@pytest.mark.parametrize("loss", ["nonsaturating", "wasserstein"])
def test_rounds_match_reference_float32(loss, opt):
    """float32: 4 rounds against the float64 reference.

    float32's unit roundoff is 6e-8; a forward/backward pass through these 3-layer, 16-wide networks
    accumulates a few hundred roundings, so gradients agree to ~1e-5 relative. An update moves each
    parameter by at most ~lr (1e-2 here; Adam and RMSprop normalise the gradient), so after 4 rounds of
    2 + 2 updates the parameters agree to ~1e-5 absolute unless a gradient entry is pure rounding noise,
    which these generic inputs avoid. A backend bug (a wrong formula, a missing transpose, a frozen net
    that moves) shows up at 1e-3 or more.
    """
    ref, tb, pairs = _train_both(make_config(loss, opt), rounds=4, dtype="float32")
    for m_ref, m_torch in pairs:
        metrics_close(m_ref, m_torch, 1e-4)
    assert max(np.max(np.abs(v - tb.export_params()[k])) for k, v in ref.export_params().items()) < 2e-5
    assert tb.generate(np.zeros((2, 3))).dtype == np.float32


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
def test_train_rounds_equals_train_step_loop(loss, dtype):
    """The device-side chunk gives bitwise the same parameters, optimizer states and metrics."""
    config = make_config(loss, "adam" if loss != "wasserstein" else "rmsprop")
    data = toy_data(config)
    index, z_d, z_g = draw_chunk(config, len(data), rounds=6, seed=5)
    _, looped = backends_pair(config, seed=2, dtype=dtype)
    _, chunked = backends_pair(config, seed=2, dtype=dtype)
    expected = [looped.train_step(inputs) for inputs in rounds_inputs(data, index, z_d, z_g)]
    chunked.set_data(data)
    got = chunked.train_rounds(index[:4], z_d[:4], z_g[:4]) + chunked.train_rounds(index[4:], z_d[4:], z_g[4:])
    assert [m.step for m in got] == [1, 2, 3, 4, 5, 6] and chunked.step == 6
    for m_loop, m_chunk in zip(expected, got, strict=True):
        assert m_loop.to_dict() == pytest.approx(m_chunk.to_dict(), rel=0, abs=0, nan_ok=True)
    assert_dicts_equal(looped.export_params(), chunked.export_params(), "params")
    for a, b in zip(looped.export_optimizer_state(), chunked.export_optimizer_state(), strict=True):
        assert_dicts_equal(a, b, "optimizer state")


def test_train_rounds_with_the_interface_default_agree():
    """The override and the interface's default (train_step per round) agree with the reference too."""
    config = make_config("nonsaturating", "adam")
    data = toy_data(config)
    index, z_d, z_g = draw_chunk(config, len(data), rounds=3, seed=1)
    ref, tb = backends_pair(config, seed=4)
    ref.set_data(data)
    tb.set_data(data)
    for m_ref, m_torch in zip(ref.train_rounds(index, z_d, z_g), tb.train_rounds(index, z_d, z_g), strict=True):
        metrics_close(m_ref, m_torch, TOL64)
    assert tb.train_rounds(index[:0], z_d[:0], z_g[:0]) == []


def test_g_step_leaves_d_bitwise_unchanged_and_d_step_leaves_g():
    config = make_config("nonsaturating", "adam")
    _, tb = backends_pair(config, seed=8)
    rng = np.random.default_rng(0)
    before = tb.export_params()
    d_state_before, g_state_before = tb.export_optimizer_state()
    real = torch.as_tensor(rng.standard_normal((16, 2)))
    z = torch.as_tensor(rng.standard_normal((16, 3)))

    tb._g_update(z)  # one G update
    after_g = tb.export_params()
    for name in before:
        same = before[name].tobytes() == after_g[name].tobytes()
        assert same == name.startswith("D."), f"{name} {'changed' if not same else 'did not change'}"
    assert all(p.grad is None for p in tb.D.parameters()), "the G step accumulated gradients in D"
    assert all(p.requires_grad for p in tb.D.parameters()), "D left frozen after the G step"
    assert_dicts_equal(d_state_before, tb.export_optimizer_state()[0], "D optimizer state")

    tb._d_update(real, z)  # one D update
    after_d = tb.export_params()
    for name in before:
        same = after_g[name].tobytes() == after_d[name].tobytes()
        assert same == name.startswith("G."), f"{name} {'changed' if not same else 'did not change'}"
    g_grads = [p.grad for p in tb.G.parameters()]
    assert all(g is not None for g in g_grads)  # from the G step, untouched by the D step
    g_state_after = tb.export_optimizer_state()[1]
    assert g_state_after["step"] == g_state_before["step"] + 1


def test_weight_clipping_clamps_every_critic_parameter():
    config = make_config("wasserstein", "rmsprop", clip_value=0.02, d_steps=3, g_steps=1)
    ref, tb, _ = _train_both(config, rounds=3)
    params = tb.export_params()
    for name, value in params.items():
        if name.startswith("D."):
            assert np.max(np.abs(value)) <= 0.02, name
    # at init many D entries exceed 0.02, so clipping really happened; G is never clipped
    assert any(np.max(np.abs(v)) == 0.02 for k, v in params.items() if k.startswith("D."))
    assert max(np.max(np.abs(v)) for k, v in params.items() if k.startswith("G.")) > 0.1
    assert max_rel_diff(ref.export_params(), params) < TOL64


@pytest.mark.parametrize("opt", ["adam", "sgd_momentum", "rmsprop_momentum"])
def test_foreach_and_fused_implementations_agree(opt):
    """torch.optim's single-tensor, foreach and (where torch has one) fused paths: the same training."""
    config = make_config("nonsaturating", opt)
    variants = [{"foreach": False}, {"foreach": True}]
    if not opt.startswith("rmsprop"):
        variants.append({"fused": True})
    results = [_train_both(config, rounds=4, seed=6, **kw)[1].export_params() for kw in variants]
    for other in results[1:]:
        assert_dicts_close(results[0], other, TOL64, "params")


def test_metrics_are_reported_like_the_reference():
    config = make_config("minimax", "sgd", batch_size=10)
    _, _, pairs = _train_both(config, rounds=2)
    m = pairs[-1][1]
    assert isinstance(m, train.StepMetrics) and m.step == 2
    assert 0.0 <= m.d_acc_real <= 1.0 and np.isnan(m.critic_gap)
    assert all(isinstance(v, int | float) for v in m.to_dict().values())


def test_reference_backend_and_torch_continue_from_the_same_checkpoint():
    """load_state of a mid-training reference state: the torch backend continues the reference's run."""
    config = make_config("nonsaturating", "rmsprop_momentum")
    data = toy_data(config)
    inputs = rounds_inputs(data, *draw_chunk(config, len(data), rounds=6, seed=3))
    ref = ReferenceBackend(config)
    ref.init(1)
    for x in inputs[:3]:
        ref.train_step(x)
    tb = TorchBackend(config, device="cpu")
    tb.load_state(ref.export_params(), *ref.export_optimizer_state(), step=ref.step)
    for x in inputs[3:]:
        metrics_close(ref.train_step(x), tb.train_step(x), TOL64)
    assert tb.step == 6
    assert max_rel_diff(ref.export_params(), tb.export_params()) < TOL64
