"""State import/export of the torch backend (the interchange layout, bitwise round trips) and bad input."""

import numpy as np
import pytest
import torch

from backends import load_backend
from backends.torch import TorchBackend, convert, ddp
from reference import optim
from reference.train import StepInputs

from .common import OPTIMIZERS, assert_dicts_equal, backends_pair, draw_chunk, make_config, rounds_inputs, toy_data


def _trained(opt="adam", loss="nonsaturating", rounds=3, dtype="float64"):
    config = make_config(loss, opt)
    _, tb = backends_pair(config, seed=9, dtype=dtype)
    data = toy_data(config)
    inputs = rounds_inputs(data, *draw_chunk(config, len(data), rounds + 3, seed=4))
    for x in inputs[:rounds]:
        tb.train_step(x)
    return config, tb, inputs[rounds:]


def test_registry_finds_the_torch_backend():
    assert load_backend("torch") is TorchBackend
    assert TorchBackend.name == "torch"


def test_weights_are_transposed_once_at_the_boundary():
    config = make_config()
    _, tb = backends_pair(config, seed=1)
    params = tb.export_params()
    w = params["G.0.weight"]  # interchange (n_in, n_out) = (3, 16)
    assert w.shape == (3, 16) and tb.G.linears[0].weight.shape == (16, 3)
    np.testing.assert_array_equal(tb.G.linears[0].weight.detach().numpy(), w.T)
    # and y = x @ W + b is what the torch module computes
    x = np.random.default_rng(0).standard_normal((4, 3))
    h = tb.G.linears[0](torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(h, x @ w + params["G.0.bias"], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_export_import_round_trip_is_bitwise(opt, dtype):
    """export -> load_state into a fresh backend -> export gives the same bits, and both then train identically."""
    config, tb, more = _trained(opt, dtype=dtype)
    params, (d_state, g_state) = tb.export_params(), tb.export_optimizer_state()
    assert list(params) == list(config.spec.param_shapes())
    assert all(v.dtype == np.float64 for v in [*params.values(), *d_state.values(), *g_state.values()])
    assert list(d_state) == optim.state_names(config.d_optimizer, [k for k in params if k.startswith("D.")])
    assert float(d_state["step"]) == 2 * 3 and float(g_state["step"]) == 2 * 3  # k = m = 2, 3 rounds

    fresh = TorchBackend(config, dtype=dtype, device="cpu")
    fresh.load_state(params, d_state, g_state, step=tb.step)
    assert fresh.step == tb.step == 3
    assert_dicts_equal(params, fresh.export_params(), "params")
    for a, b in zip((d_state, g_state), fresh.export_optimizer_state(), strict=True):
        assert_dicts_equal(a, b, "optimizer state")
    for x in more:
        m1, m2 = tb.train_step(x), fresh.train_step(x)
        assert m1.to_dict() == pytest.approx(m2.to_dict(), rel=0, abs=0, nan_ok=True)
    assert_dicts_equal(tb.export_params(), fresh.export_params(), "params after training on")


def test_exports_are_copies_and_inputs_are_never_written():
    config, tb, more = _trained("adam")
    params, (d_state, _) = tb.export_params(), tb.export_optimizer_state()
    snapshot = {k: v.copy() for k, v in params.items()}
    state_snapshot = {k: v.copy() for k, v in d_state.items()}
    fresh = TorchBackend(config, device="cpu")
    fresh.load_state(params, *tb.export_optimizer_state(), step=tb.step)
    fresh.train_step(more[0])
    tb.train_step(more[0])
    assert_dicts_equal(snapshot, params, "exported params after training (and after loading them)")
    assert_dicts_equal(state_snapshot, d_state, "exported optimizer state after training")


def test_fresh_optimizer_state_matches_reference_init_state():
    config = make_config("minimax", "rmsprop_momentum")
    ref, tb = backends_pair(config, seed=0)
    for a, b in zip(ref.export_optimizer_state(), tb.export_optimizer_state(), strict=True):
        assert_dicts_equal(a, b, "initial optimizer state")


# ----- bad input: clear errors naming the problem -----

def test_bad_devices_and_options():
    config = make_config()
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        TorchBackend(config, device="gpu")
    with pytest.raises(ValueError, match="unknown device 'tpu:0'"):
        TorchBackend(config, device="tpu:0")
    with pytest.raises(TypeError, match="device must be"):
        TorchBackend(config, device=0)
    with pytest.raises(ValueError, match="unknown dtype"):
        TorchBackend(config, dtype="float16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            TorchBackend(config, device="cuda")
        with pytest.raises(ValueError, match="amp=True .* CUDA only"):
            TorchBackend(config, dtype="float32", amp=True)
    with pytest.raises(ValueError, match="amp=True .* CUDA only"):
        TorchBackend(config, dtype="float32", device="cpu", amp=True)
    with pytest.raises(ValueError, match="RMSprop has no fused"):
        TorchBackend(make_config(opt="rmsprop"), device="cpu", fused=True)
    with pytest.raises(TypeError, match="TrainConfig"):
        TorchBackend({"spec": None}, device="cpu")


def test_default_device_is_cuda_when_available():
    tb = TorchBackend(make_config())
    assert tb.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert tb.rank == 0 and tb.world_size == 1


def test_calls_before_any_state_say_what_to_do():
    tb = TorchBackend(make_config(), device="cpu")
    for call in (lambda: tb.step, tb.export_params, tb.export_optimizer_state, lambda: tb.generate(np.zeros((1, 3)))):
        with pytest.raises(RuntimeError, match="init"):
            call()


def test_bad_arrays_are_rejected():
    config, tb, more = _trained("adam", rounds=1)
    with pytest.raises(ValueError, match=r"z must have shape \(batch > 0, 3\)"):
        tb.generate(np.zeros((4, 2)))
    with pytest.raises(TypeError, match="numpy array"):
        tb.discriminate([[0.0, 1.0]])
    with pytest.raises(TypeError, match="floating-point"):
        tb.discriminate(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="NaN or Inf"):
        tb.d_grads(np.full((2, 2), np.nan), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"real_out must have shape"):
        tb.d_loss(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"StepInputs.z_g must have shape"):
        tb.train_step(StepInputs(more[0].real, more[0].z_d, more[0].z_g[:, :, :2]))
    with pytest.raises(TypeError, match="StepInputs"):
        tb.train_step((more[0].real, more[0].z_d, more[0].z_g))
    assert tb.step == 1  # nothing above trained


def test_bad_states_are_rejected_and_the_old_state_kept():
    config, tb, _ = _trained("adam", rounds=1)
    params, (d_state, g_state) = tb.export_params(), tb.export_optimizer_state()
    before = tb.export_params()

    def rejected(exc, match, p=params, d=d_state, g=g_state, step=1):
        with pytest.raises(exc, match=match):
            tb.load_state(p, d, g, step)
        assert_dicts_equal(before, tb.export_params(), "params after a rejected load_state")

    rejected(ValueError, "missing \\['D.0.bias'\\]", p={k: v for k, v in params.items() if k != "D.0.bias"})
    rejected(ValueError, r"G.0.weight has shape \(16, 3\), expected \(3, 16\)", p={**params, "G.0.weight":
                                                                                   params["G.0.weight"].T})
    rejected(ValueError, "G.1.bias contains NaN", p={**params, "G.1.bias": np.full(8, np.nan)})
    sgd_state = optim.init_state(OPTIMIZERS["sgd_momentum"], {k: v for k, v in params.items() if k.startswith("D.")})
    rejected(ValueError, "D optimizer state does not match the config", d=sgd_state)
    rejected(ValueError, r"exp_avg has shape \(16, 2\), expected \(2, 16\)",
             d={**d_state, "D.0.weight.exp_avg": d_state["D.0.weight.exp_avg"].T})
    rejected(ValueError, "step must be a non-negative whole number", g={**g_state, "step": np.asarray(1.5)})
    rejected(ValueError, "step must be a non-negative int", step=-1)
    rejected(TypeError, "G optimizer state step must be a floating-point", g={**g_state, "step": 2})


def test_chunk_input_errors():
    config, tb, _ = _trained("adam", rounds=1)
    data = toy_data(config)
    index, z_d, z_g = draw_chunk(config, len(data), rounds=2, seed=0)
    with pytest.raises(RuntimeError, match="set_data"):
        tb.train_rounds(index, z_d, z_g)
    with pytest.raises(ValueError, match=r"shape \(N > 0, 2\)"):
        tb.set_data(data[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        tb.set_data(np.where(data > 2, np.inf, data))
    tb.set_data(data[:10])
    with pytest.raises(ValueError, match=r"outside the data.*\[0, 10\)"):
        tb.train_rounds(index, z_d, z_g)
    tb.set_data(data)
    with pytest.raises(TypeError, match="integer"):
        tb.train_rounds(index.astype(float), z_d, z_g)
    with pytest.raises(ValueError, match="z_g must have shape"):
        tb.train_rounds(index, z_d, z_g[:1])
    with pytest.raises(ValueError, match=r"index must have shape \(n, 2, batch > 0\)"):
        tb.train_rounds(index[:, :1], z_d, z_g)
    assert tb.step == 1


def test_sharding_of_the_global_batch():
    ctx = ddp.DistContext(rank=1, world_size=3)
    array = np.arange(2 * 6 * 2).reshape(2, 6, 2)
    np.testing.assert_array_equal(ddp.shard(array, ctx, 1, "real"), array[:, 2:4])
    with pytest.raises(ValueError, match="global batch of 7 rows does not split evenly over 3 processes"):
        ddp.shard(np.zeros((2, 7, 2)), ctx, 1, "StepInputs.real")
    assert ddp.shard(array, ddp.DistContext(), 1, "x") is array


def test_convert_keeps_layouts_and_never_aliases():
    w = np.arange(6.0).reshape(2, 3)
    t = convert.to_torch("D.0.weight", w, torch.float64, torch.device("cpu"))
    assert t.shape == (3, 2)
    t.add_(1.0)
    assert w[0, 0] == 0.0  # a copy, not a view of the caller's array
    back = convert.to_numpy("D.0.weight", t)
    np.testing.assert_array_equal(back, w + 1.0)
    t.add_(1.0)
    assert back[0, 0] == 1.0
    b = convert.to_torch("D.0.bias", np.arange(3.0), torch.float32, torch.device("cpu"))
    assert b.dtype == torch.float32 and convert.to_numpy("D.0.bias", b).dtype == np.float64
