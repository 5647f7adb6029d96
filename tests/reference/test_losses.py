"""reference.losses: gradients, values, behaviour at extreme logits, saturation, and the optimal discriminator."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import gan, losses, mlp, optim
from reference.data import get_dataset
from tests.helpers.finite_diff import assert_gradients_close, noise_floor, numerical_gradient
from tests.helpers.strategies import logits

MODERATE = 30.0  # logits within +-30: every loss and gradient is far from underflow
# Overflow, division by zero and invalid operations are errors; underflow is not: softplus(-1e4) = e^-1e4
# underflows to 0.0, which is the correctly rounded value (numpy ignores underflow by default too).
STRICT = {"over": "raise", "divide": "raise", "invalid": "raise", "under": "ignore"}


def naive_log_sigmoid(x):
    """log(1 / (1 + e^-x)), the textbook way (fine for moderate x, overflows for large ones)."""
    return math.log(1.0 / (1.0 + math.exp(-x)))


def exact_softplus(u):
    """log(1 + e^u) without cancellation or overflow, in plain Python: a second implementation."""
    return u + math.log1p(math.exp(-u)) if u > 0 else math.log1p(math.exp(u))


D_LOSSES = [losses.minimax_d_loss, losses.wasserstein_critic_loss]
G_LOSSES = [losses.minimax_g_loss, losses.nonsaturating_g_loss, losses.wasserstein_g_loss]


# ----- Gradients against central differences -----

@pytest.mark.parametrize("loss_fn", D_LOSSES, ids=lambda f: f.__name__)
@given(real=logits(max_batch=16, max_abs=MODERATE), fake=logits(max_batch=16, max_abs=MODERATE))
def test_d_loss_gradients_match_central_differences(loss_fn, real, fake):
    loss, grad_real, grad_fake = loss_fn(real, fake)
    assert grad_real.shape == real.shape and grad_fake.shape == fake.shape
    numeric_real = numerical_gradient(lambda r: loss_fn(r, fake)[0], real, eps=1e-4, order=4)
    numeric_fake = numerical_gradient(lambda f: loss_fn(real, f)[0], fake, eps=1e-4, order=4)
    assert_gradients_close(grad_real, numeric_real, atol=noise_floor(loss), name="dL/dreal")
    assert_gradients_close(grad_fake, numeric_fake, atol=noise_floor(loss), name="dL/dfake")


@pytest.mark.parametrize("loss_fn", G_LOSSES, ids=lambda f: f.__name__)
@given(fake=logits(max_batch=16, max_abs=MODERATE))
def test_g_loss_gradients_match_central_differences(loss_fn, fake):
    loss, grad = loss_fn(fake)
    assert grad.shape == fake.shape
    numeric = numerical_gradient(lambda f: loss_fn(f)[0], fake, eps=1e-4, order=4)
    assert_gradients_close(grad, numeric, atol=noise_floor(loss))


# ----- Values against direct formulas -----

@given(real=logits(max_batch=16, max_abs=15.0), fake=logits(max_batch=16, max_abs=15.0))
def test_values_against_the_textbook_formulas(real, fake):
    """-E log D(x) - E log(1 - D(G(z))), -E log D(G(z)), E log(1 - D(G(z))), computed naively."""
    r, f = real.ravel().tolist(), fake.ravel().tolist()
    d_loss = -np.mean([naive_log_sigmoid(x) for x in r]) - np.mean([naive_log_sigmoid(-x) for x in f])
    saturating = np.mean([naive_log_sigmoid(-x) for x in f])
    nonsaturating = -np.mean([naive_log_sigmoid(x) for x in f])
    assert losses.minimax_d_loss(real, fake)[0] == pytest.approx(d_loss, rel=1e-9, abs=1e-12)
    assert losses.minimax_g_loss(fake)[0] == pytest.approx(saturating, rel=1e-9, abs=1e-12)
    assert losses.nonsaturating_g_loss(fake)[0] == pytest.approx(nonsaturating, rel=1e-9, abs=1e-12)
    assert losses.wasserstein_critic_loss(real, fake)[0] == pytest.approx(np.mean(f) - np.mean(r), rel=1e-12,
                                                                          abs=1e-12)
    assert losses.wasserstein_g_loss(fake)[0] == pytest.approx(-np.mean(f), rel=1e-12, abs=1e-12)


@given(fake=logits(max_batch=16, max_abs=1e4))
def test_values_for_any_logit_against_an_exact_softplus(fake):
    f = fake.ravel().tolist()
    assert losses.nonsaturating_g_loss(fake)[0] == pytest.approx(np.mean([exact_softplus(-x) for x in f]), rel=1e-13)
    assert losses.minimax_g_loss(fake)[0] == pytest.approx(-np.mean([exact_softplus(x) for x in f]), rel=1e-13)
    for x in f:
        assert losses.softplus(x) == pytest.approx(exact_softplus(x), rel=1e-15)


def test_values_by_hand():
    real, fake = np.array([[0.0], [math.log(3.0)]]), np.array([[0.0]])
    # D(real) = 1/2 and 3/4, D(fake) = 1/2: -(ln 1/2 + ln 3/4)/2 - ln(1/2) = (ln 2 + ln 4/3)/2 + ln 2
    assert losses.minimax_d_loss(real, fake)[0] == pytest.approx((math.log(2) + math.log(4 / 3)) / 2 + math.log(2))
    _, grad_real, grad_fake = losses.minimax_d_loss(real, fake)
    np.testing.assert_allclose(grad_real, [[(0.5 - 1) / 2], [(0.75 - 1) / 2]], rtol=1e-15)
    np.testing.assert_allclose(grad_fake, [[0.5]], rtol=1e-15)
    assert losses.minimax_g_loss(fake)[0] == pytest.approx(-math.log(2))
    assert losses.nonsaturating_g_loss(fake)[0] == pytest.approx(math.log(2))
    loss, grad_real, grad_fake = losses.wasserstein_critic_loss(np.array([[1.0], [3.0]]), np.array([[-1.0]]))
    assert loss == -3.0
    np.testing.assert_array_equal(grad_real, [[-0.5], [-0.5]])
    np.testing.assert_array_equal(grad_fake, [[1.0]])


def test_dispatch_by_kind():
    real, fake = np.array([[0.3], [-1.2]]), np.array([[2.0], [0.1], [-0.7]])
    for kind, d_fn in [("minimax", losses.minimax_d_loss), ("nonsaturating", losses.minimax_d_loss),
                       ("wasserstein", losses.wasserstein_critic_loss)]:
        for got, want in zip(losses.d_loss(kind, real, fake), d_fn(real, fake), strict=True):
            np.testing.assert_array_equal(got, want)
    for kind, g_fn in [("minimax", losses.minimax_g_loss), ("nonsaturating", losses.nonsaturating_g_loss),
                       ("wasserstein", losses.wasserstein_g_loss)]:
        for got, want in zip(losses.g_loss(kind, fake), g_fn(fake), strict=True):
            np.testing.assert_array_equal(got, want)


@given(real=logits(max_batch=16, max_abs=50.0), fake=logits(max_batch=16, max_abs=50.0))
def test_against_torch_autograd(real, fake):
    """torch's binary cross-entropy on logits and its autograd: a third implementation of the sigmoid losses.

    torch's BCE is accurate to ~1e-15 absolute, not relative (at logit -28 it is off by 0.2%: -6.9278e-13 for
    -softplus(-28) = -6.9144e-13, which the reference gets right; see the exact_softplus test), hence abs=1e-14.
    """
    torch = pytest.importorskip("torch")
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    r = torch.tensor(real, requires_grad=True)
    f = torch.tensor(fake, requires_grad=True)
    d = bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
    d.backward()
    loss, grad_real, grad_fake = losses.minimax_d_loss(real, fake)
    assert loss == pytest.approx(d.item(), rel=1e-13, abs=1e-14)
    np.testing.assert_allclose(grad_real, r.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad_fake, f.grad.numpy(), rtol=1e-12, atol=1e-15)
    for fn, torch_loss in [(losses.nonsaturating_g_loss, lambda t: bce(t, torch.ones_like(t))),
                           (losses.minimax_g_loss, lambda t: -bce(t, torch.zeros_like(t)))]:
        t = torch.tensor(fake, requires_grad=True)
        value = torch_loss(t)
        value.backward()
        loss, grad = fn(fake)
        assert loss == pytest.approx(value.item(), rel=1e-13, abs=1e-14)
        np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-12, atol=1e-15)


# ----- Extreme logits -----

@pytest.mark.parametrize("big", [30.0, 800.0, 1e4])
def test_finite_and_warning_free_at_extreme_logits(big):
    extreme = np.array([[-big], [big], [0.0]])
    with np.errstate(**STRICT), warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [losses.minimax_d_loss(extreme, extreme), losses.minimax_g_loss(extreme),
                   losses.nonsaturating_g_loss(extreme), losses.wasserstein_critic_loss(extreme, extreme),
                   losses.wasserstein_g_loss(extreme)]
    for result in results:
        assert all(np.all(np.isfinite(part)) for part in result)
    if big == 1e4:  # softplus(1e4) = 1e4 exactly; the gradients are exactly (sigmoid - 1)/B or sigmoid/B
        loss, grad_real, grad_fake = results[0]
        assert loss == pytest.approx((1e4 + 0 + math.log(2)) / 3 + (0 + 1e4 + math.log(2)) / 3, rel=1e-15)
        np.testing.assert_array_equal(grad_real, [[-1 / 3], [0.0], [-1 / 6]])
        np.testing.assert_array_equal(grad_fake, [[0.0], [1 / 3], [1 / 6]])


@given(fake=logits(max_batch=64, max_abs=1e4))
def test_every_loss_is_finite_for_any_logit(fake):
    with np.errstate(**STRICT), warnings.catch_warnings():
        warnings.simplefilter("error")
        for kind in losses.LOSSES:
            loss, grad_real, grad_fake = losses.d_loss(kind, fake, fake)
            assert np.isfinite(loss) and np.all(np.isfinite(grad_real)) and np.all(np.isfinite(grad_fake))
            loss, grad = losses.g_loss(kind, fake)
            assert np.isfinite(loss) and np.all(np.isfinite(grad))


# ----- Saturation: why the non-saturating loss exists -----

@given(batch=st.integers(1, 64), logit=st.floats(-1e4, -20.0))
def test_saturating_gradient_vanishes_where_the_nonsaturating_one_does_not(batch, logit):
    """When D confidently rejects the fakes (logit -> -inf), minimax G's gradient -> 0, non-saturating -> -1/B."""
    fake = np.full((batch, 1), logit)
    _, saturating = losses.minimax_g_loss(fake)
    _, nonsaturating = losses.nonsaturating_g_loss(fake)
    assert np.all(np.abs(saturating) < 1e-8 / batch)
    np.testing.assert_allclose(nonsaturating, -1.0 / batch, rtol=1e-8)


def test_saturating_gradient_decays_like_sigmoid():
    """|d/dl E log(1 - D)| = sigmoid(l) / B: halves per ln 2 of logit in the left tail; the NS gradient stays put."""
    ls = np.array([[-5.0], [-10.0], [-15.0], [-20.0]])
    _, saturating = losses.minimax_g_loss(ls)
    _, nonsaturating = losses.nonsaturating_g_loss(ls)
    np.testing.assert_allclose(-saturating.ravel() * 4, [1 / (1 + math.exp(-x)) for x in ls.ravel()], rtol=1e-7)
    assert np.all(np.diff(np.abs(saturating.ravel())) < 0)
    np.testing.assert_allclose(nonsaturating.ravel() * 4, [1 / (1 + math.exp(-x)) - 1 for x in ls.ravel()],
                               rtol=1e-12)


# ----- The optimal discriminator when the fakes are the real data -----

@given(c=st.floats(-50.0, 50.0), batch=st.integers(1, 32))
def test_d_loss_on_identical_batches_is_minimised_at_logit_zero(c, batch):
    """With p_g = p_data, L(c) = softplus(-c) + softplus(c) >= 2 ln 2, equality only at c = 0 (D = 1/2)."""
    shared = np.full((batch, 1), c)
    loss, grad_real, grad_fake = losses.minimax_d_loss(shared, shared)
    zero = np.zeros((batch, 1))
    loss_at_zero, grad_real_0, grad_fake_0 = losses.minimax_d_loss(zero, zero)
    assert loss_at_zero == pytest.approx(2 * math.log(2), rel=1e-15)
    np.testing.assert_array_equal(grad_real_0 + grad_fake_0, 0.0)
    assert loss >= loss_at_zero
    if abs(c) > 1e-3:
        assert loss > loss_at_zero
        # the gradient along the shared logit, 2 sigmoid(c) - 1, points away from 0 on either side
        assert np.sign(np.sum(grad_real + grad_fake)) == np.sign(c)


def test_d_loss_minimum_on_a_grid_is_at_zero():
    cs = np.linspace(-3, 3, 601)
    values = [losses.minimax_d_loss(np.array([[c]]), np.array([[c]]))[0] for c in cs]
    assert cs[int(np.argmin(values))] == pytest.approx(0.0, abs=1e-12)


def test_training_d_on_fakes_equal_to_real_data_drives_d_to_one_half():
    """Train D alone with G(z) = the real batch: D(x) -> 1/2 everywhere the data lives, accuracy -> 50%.

    G is the identity map (one linear layer W = I, b = 0), and each D step gets z = its own real batch, so
    the fake batch is the real batch. D starts biased (last bias +3, D ~ 0.95) so there is something to learn.
    """
    data = get_dataset("ring")
    spec = gan.GANSpec(mlp.MLPSpec(2, (), 2, "relu", "identity"), mlp.MLPSpec(2, (16, 16), 1, "tanh", "identity"),
                       "minimax")
    params = gan.init_params(spec, seed=3)
    params["G.0.weight"], params["G.0.bias"] = np.eye(2), np.zeros(2)
    params["D.2.bias"] = params["D.2.bias"] + 3.0
    opt = optim.OptimizerSpec("adam", lr=1e-2, beta1=0.5)
    state = optim.init_state(opt, gan.network(params, "D"))
    rng = np.random.default_rng(0)
    probe = data.sample(512, np.random.default_rng(1))
    d_before = 1 / (1 + np.exp(-gan.discriminate(spec, params, probe)))
    assert d_before.mean() > 0.9
    for _ in range(300):
        x = data.sample(64, rng)
        params, state, stats = gan.d_update(spec, opt, params, state, x, x)
        np.testing.assert_array_equal(stats.real_out, stats.fake_out)
    logits_after = gan.discriminate(spec, params, probe)
    d_after = 1 / (1 + np.exp(-logits_after))
    assert abs(d_after.mean() - 0.5) < 0.01
    assert np.abs(d_after - 0.5).max() < 0.05
    assert stats.loss == pytest.approx(2 * math.log(2), abs=1e-3)
    accuracy = (np.mean(stats.real_out > 0) + np.mean(stats.fake_out < 0)) / 2
    assert accuracy == pytest.approx(0.5, abs=1 / 64)
