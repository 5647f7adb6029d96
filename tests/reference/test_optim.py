"""reference.optim: SGD, Adam and RMSprop by hand for a few steps, then against torch.optim over generated settings."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import optim
from tests.helpers.strategies import optimizer_specs, seeds

P0 = {"w": np.array([1.0, -2.0]), "b": np.array(0.5)}
GRADS = [{"w": np.array([0.5, 1.0]), "b": np.array(2.0)},
         {"w": np.array([-1.0, 0.5]), "b": np.array(-1.0)},
         {"w": np.array([0.25, 0.0]), "b": np.array(0.0)}]


def run(spec, steps, params=P0, grads=GRADS):
    """The parameters and the state after each of `steps` updates."""
    state = optim.init_state(spec, params)
    history = []
    for g in grads[:steps]:
        params, state = optim.step(spec, params, g, state)
        history.append((params, state))
    return history


def assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-14, atol=1e-15)


# ----- Hand-computed updates -----

def test_sgd_without_momentum_by_hand():
    (p1, s1), (p2, s2), (p3, s3) = run(optim.OptimizerSpec("sgd", lr=0.1), 3)
    assert_close(p1["w"], [1.0 - 0.1 * 0.5, -2.0 - 0.1 * 1.0])  # [0.95, -2.1]
    assert_close(p2["w"], [0.95 + 0.1, -2.1 - 0.05])  # [1.05, -2.15]
    assert_close(p3["w"], [1.05 - 0.025, -2.15])
    assert_close(p3["b"], 0.5 - 0.2 + 0.1 - 0.0)
    assert list(s3) == ["step"] and s3["step"] == 3.0  # no buffers without momentum


def test_sgd_with_momentum_by_hand():
    (p1, s1), (p2, s2), (p3, s3) = run(optim.OptimizerSpec("sgd", lr=0.1, momentum=0.9), 3)
    # step 1: buf = g1 = [0.5, 1.0];                        p = [1 - 0.05, -2 - 0.1] = [0.95, -2.1]
    assert_close(s1["w.momentum_buffer"], [0.5, 1.0])
    assert_close(p1["w"], [0.95, -2.1])
    # step 2: buf = 0.9 [0.5, 1.0] + [-1.0, 0.5] = [-0.55, 1.4];  p = [0.95 + 0.055, -2.1 - 0.14]
    assert_close(s2["w.momentum_buffer"], [-0.55, 1.4])
    assert_close(p2["w"], [1.005, -2.24])
    # step 3: buf = 0.9 [-0.55, 1.4] + [0.25, 0] = [-0.245, 1.26];  p = [1.005 + 0.0245, -2.24 - 0.126]
    assert_close(s3["w.momentum_buffer"], [-0.245, 1.26])
    assert_close(p3["w"], [1.0295, -2.366])
    # the scalar: bufs 2.0, 0.9 * 2 - 1 = 0.8, 0.72;  p = 0.5 - 0.2 - 0.08 - 0.072
    assert_close(s3["b.momentum_buffer"], 0.72)
    assert_close(p3["b"], 0.148)
    assert s3["step"] == 3.0


def test_adam_by_hand():
    eps = 1e-8
    (p1, s1), (p2, s2) = run(optim.OptimizerSpec("adam", lr=0.1, beta1=0.5, beta2=0.75, eps=eps), 2)
    # step 1, w[0]: m = 0.5 * 0.5 = 0.25, v = 0.25 * 0.25 = 0.0625; bias corrections 1 - 0.5 = 0.5, 1 - 0.75 = 0.25
    #   p = 1 - (0.1 / 0.5) * 0.25 / (sqrt(0.0625) / sqrt(0.25) + eps) = 1 - 0.05 / (0.5 + eps)
    assert_close(s1["w.exp_avg"][0], 0.25)
    assert_close(s1["w.exp_avg_sq"][0], 0.0625)
    assert_close(p1["w"][0], 1.0 - 0.05 / (0.5 + eps))
    # step 1, w[1]: g = 1: m = 0.5, v = 0.25;  p = -2 - 0.2 * 0.5 / (0.5 / 0.5 + eps)
    assert_close(p1["w"][1], -2.0 - 0.1 / (1.0 + eps))
    # step 2, w[0]: g = -1: m = 0.5 * 0.25 - 0.5 = -0.375, v = 0.75 * 0.0625 + 0.25 = 0.296875;
    #   bias corrections 1 - 0.25 = 0.75, 1 - 0.5625 = 0.4375
    assert_close(s2["w.exp_avg"][0], -0.375)
    assert_close(s2["w.exp_avg_sq"][0], 0.296875)
    expected = 1.0 - 0.05 / (0.5 + eps) - (0.1 / 0.75) * -0.375 / (math.sqrt(0.296875) / math.sqrt(0.4375) + eps)
    assert_close(p2["w"][0], expected)
    # step 2, b: g = 2 then -1: m = 1.0 then 0.5 - 0.5 = 0: the second update does not move b
    assert_close(s2["b.exp_avg"], 0.0)
    assert_close(p2["b"], p1["b"])
    assert s2["step"] == 2.0


def test_rmsprop_without_momentum_by_hand():
    eps = 1e-8
    (p1, s1), (p2, s2) = run(optim.OptimizerSpec("rmsprop", lr=0.01, alpha=0.9, eps=eps), 2)
    # b: g = 2: s = 0.1 * 4 = 0.4, p = 0.5 - 0.01 * 2 / (sqrt(0.4) + eps)
    assert_close(s1["b.square_avg"], 0.4)
    assert_close(p1["b"], 0.5 - 0.02 / (math.sqrt(0.4) + eps))
    # b: g = -1: s = 0.9 * 0.4 + 0.1 * 1 = 0.46, p = p1 + 0.01 / (sqrt(0.46) + eps)
    assert_close(s2["b.square_avg"], 0.46)
    assert_close(p2["b"], 0.5 - 0.02 / (math.sqrt(0.4) + eps) + 0.01 / (math.sqrt(0.46) + eps))
    assert sorted(s2) == ["b.square_avg", "step", "w.square_avg"]


def test_rmsprop_with_momentum_by_hand():
    eps = 1e-8
    (p1, s1), (p2, s2) = run(optim.OptimizerSpec("rmsprop", lr=0.01, alpha=0.9, eps=eps, momentum=0.5), 2)
    buf1 = 2.0 / (math.sqrt(0.4) + eps)  # g / (sqrt(s) + eps) with s = 0.4
    assert_close(s1["b.momentum_buffer"], buf1)
    assert_close(p1["b"], 0.5 - 0.01 * buf1)
    buf2 = 0.5 * buf1 + -1.0 / (math.sqrt(0.46) + eps)  # s = 0.46
    assert_close(s2["b.momentum_buffer"], buf2)
    assert_close(p2["b"], 0.5 - 0.01 * buf1 - 0.01 * buf2)


# ----- State layout and purity -----

@pytest.mark.parametrize(("spec", "suffixes"), [
    (optim.OptimizerSpec("sgd"), []),
    (optim.OptimizerSpec("sgd", momentum=0.9), ["momentum_buffer"]),
    (optim.OptimizerSpec("adam"), ["exp_avg", "exp_avg_sq"]),
    (optim.OptimizerSpec("rmsprop"), ["square_avg"]),
    (optim.OptimizerSpec("rmsprop", momentum=0.5), ["square_avg", "momentum_buffer"]),
], ids=["sgd", "sgd-momentum", "adam", "rmsprop", "rmsprop-momentum"])
def test_state_names_and_initial_state(spec, suffixes):
    params = {"D.0.weight": np.ones((3, 2)), "D.0.bias": np.ones(2)}
    names = ["step"] + [f"{p}.{s}" for p in params for s in suffixes]
    assert optim.state_names(spec, params) == names
    state = optim.init_state(spec, params)
    assert list(state) == names
    assert state["step"].shape == () and state["step"].dtype == np.float64 and state["step"] == 0
    for name in names[1:]:
        param = name.rsplit(".", 1)[0]
        assert state[name].shape == params[param].shape and state[name].dtype == np.float64
        assert not np.any(state[name])
    _, new_state = optim.step(spec, params, {k: np.full_like(v, 0.5) for k, v in params.items()}, state)
    assert list(new_state) == names and new_state["step"] == 1.0


@given(spec=optimizer_specs(), seed=seeds)
def test_step_is_pure(spec, seed):
    rng = np.random.default_rng(seed)
    params = {"a": rng.standard_normal((2, 3)), "b": rng.standard_normal(3)}
    state = optim.init_state(spec, params)
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    params, state = optim.step(spec, params, grads, state)  # non-zero buffers
    before = ({k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in state.items()})
    new_params, new_state = optim.step(spec, params, grads, state)
    for original, kept in zip((params, state), before, strict=True):
        assert list(original) == list(kept)
        for k in original:
            np.testing.assert_array_equal(original[k], kept[k])
    assert not any(np.array_equal(new_params[k], params[k]) for k in params)


def test_parameters_without_a_gradient_are_passed_through():
    spec = optim.OptimizerSpec("sgd", lr=0.1)
    params = {"G.0.weight": np.ones(2), "D.0.weight": np.ones(2)}
    new_params, _ = optim.step(spec, params, {"D.0.weight": np.ones(2)}, optim.init_state(spec, {}))
    assert new_params["G.0.weight"] is params["G.0.weight"]
    assert_close(new_params["D.0.weight"], [0.9, 0.9])


# ----- Against torch.optim -----

def torch_optimizer(torch, spec, tensors):
    if spec.name == "sgd":
        return torch.optim.SGD(tensors, lr=spec.lr, momentum=spec.momentum)
    if spec.name == "adam":
        return torch.optim.Adam(tensors, lr=spec.lr, betas=(spec.beta1, spec.beta2), eps=spec.eps)
    return torch.optim.RMSprop(tensors, lr=spec.lr, alpha=spec.alpha, eps=spec.eps, momentum=spec.momentum)


@given(spec=optimizer_specs(lr_range=(1e-4, 1.0)), seed=seeds, steps=st.integers(1, 6),
       grad_scale=st.sampled_from([1e-4, 1.0, 1e3]))
def test_matches_torch_optim(spec, seed, steps, grad_scale):
    """Same hyperparameters, same gradients: same parameters and the same state, by torch's names, to ~1e-12."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    params = {"G.0.weight": rng.standard_normal((3, 4)), "G.0.bias": rng.standard_normal(4)}
    tensors = {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for k, v in params.items()}
    opt = torch_optimizer(torch, spec, list(tensors.values()))
    state = optim.init_state(spec, params)
    for _ in range(steps):
        grads = {k: grad_scale * rng.standard_normal(v.shape) for k, v in params.items()}
        for k, t in tensors.items():
            t.grad = torch.tensor(grads[k], dtype=torch.float64)
        opt.step()
        params, state = optim.step(spec, params, grads, state)
    for k, t in tensors.items():
        np.testing.assert_allclose(params[k], t.detach().numpy(), rtol=1e-12, atol=1e-14 * grad_scale)
        torch_state = opt.state[t]
        assert float(torch_state.get("step", steps)) == state["step"] == steps
        ours = {name.rsplit(".", 1)[1] for name in state if name.startswith(k + ".")}
        assert ours == {name for name, v in torch_state.items() if name != "step" and v is not None}
        for suffix in ours:
            np.testing.assert_allclose(state[f"{k}.{suffix}"], torch_state[suffix].numpy(), rtol=1e-12,
                                       atol=1e-300)


def test_state_of_parameters_without_a_gradient_is_kept():
    spec = optim.OptimizerSpec("adam")
    params = {"a": np.ones(2), "b": np.ones(2)}
    _, state = optim.step(spec, params, {"a": np.ones(2), "b": np.ones(2)}, optim.init_state(spec, params))
    _, new_state = optim.step(spec, params, {"a": np.ones(2)}, state)
    assert list(new_state) == optim.state_names(spec, params)
    np.testing.assert_array_equal(new_state["b.exp_avg"], state["b.exp_avg"])
