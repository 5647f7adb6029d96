"""Saturation, vanishing gradients and the WGAN critic, at small sizes."""

import numpy as np
import pytest

from experiments import saturation, vanishing_gradients, wasserstein_critic


def test_logit_gradients_are_d_and_one_minus_d():
    p = np.array([0.9, 0.5, 1e-2, 1e-4, 1e-6])
    grads = saturation.logit_gradients(p)
    np.testing.assert_allclose(grads["minimax"], p, rtol=1e-9)  # |dL/dl| = sigmoid(l) = D(G(z))
    np.testing.assert_allclose(grads["nonsaturating"], 1 - p, rtol=1e-9)  # |dL/dl| = 1 - D(G(z))


def test_g_parameter_gradient_vanishes_only_for_the_minimax_loss():
    rows = saturation.parameter_gradients([0.0, 4.0, 8.0, 12.0], seed=0, batch_size=128)
    minimax = np.array([r["minimax"] for r in rows])
    ns = np.array([r["nonsaturating"] for r in rows])
    d_fake = np.array([r["d_fake"] for r in rows])
    assert np.all(np.diff(d_fake) < 0) and d_fake[-1] < 1e-4
    assert np.all(np.diff(minimax) < 0) and minimax[-1] < 1e-4 * minimax[0]
    assert ns[-1] > ns[0]  # the non-saturating gradient grows instead of vanishing
    # Shifting the output bias leaves dl/dx alone, so the minimax/NS ratio is the logit factor's ratio,
    # sigmoid(l) / (1 - sigmoid(l)) per sample, about D(G(z)) once D(G(z)) is small.
    assert minimax[-1] / ns[-1] == pytest.approx(d_fake[-1], rel=0.5)


def test_from_a_strong_d_sgd_g_stalls_with_the_minimax_loss():
    d0, reached_mm, means_mm = saturation.train_from_strong_d("minimax", "sgd", seed=0, pretrain=100, rounds=60)
    _, reached_ns, means_ns = saturation.train_from_strong_d("nonsaturating", "sgd", seed=0, pretrain=100, rounds=60)
    assert d0 < 0.02  # D rejects G's samples confidently before G trains
    assert reached_mm is None and abs(means_mm[-1] - means_mm[0]) < 0.5  # barely moved in 60 rounds
    assert reached_ns is not None and reached_ns <= 40 and abs(means_ns[-1] - 4.0) < 1.0


def test_vanishing_gradients_against_a_trained_d():
    results = vanishing_gradients.run(steps=300, seed=0, checkpoints=4, eval_batches=2)
    d_rows, c_rows = results["nonsaturating"], results["wasserstein"]
    first, last = d_rows[0], d_rows[-1]
    assert last["d_fake"] < 0.01 < first["d_fake"]
    # Against the same trained D, the minimax gradient is tens of times smaller than the non-saturating one.
    assert last["nonsaturating"][0] > 30 * last["minimax"][0]
    assert last["nonsaturating"][0] > 10 * first["nonsaturating"][0]
    # The clipped critic's gradient grows from its first clipped value and stays well above zero.
    assert c_rows[-1]["wasserstein"][0] > 5 * c_rows[1]["wasserstein"][0] > 0


@pytest.fixture(scope="module")
def critic():
    return wasserstein_critic.run(steps=150, seed=0, checkpoints=4)


def test_unclipped_critic_scores_grow_beyond_probabilities(critic):
    rows = critic[None]["rows"]
    gaps = [r["gap"] for r in rows]
    assert all(b > a for a, b in zip(gaps, gaps[1:], strict=False))  # the critic gap only grows
    assert rows[-1]["max_score"] > 1.0 and rows[-1]["min_score"] < 0.0  # scores are not probabilities
    assert critic[None]["max_param"].max() > 0.5  # nothing holds the weights
    assert critic[None]["g_unchanged"]


def test_clipping_holds_every_critic_parameter_and_bounds_the_gap(critic):
    r = critic[0.01]
    assert r["max_param"].max() <= 0.01  # after every single update
    assert r["bound"] == pytest.approx((1 * 0.01) * (32 * 0.01) * (32 * 0.01))
    for row in r["rows"]:
        assert 0 < row["gap"] <= r["bound"] * row["w1"]  # gap <= L * W1 of the two batches
        assert row["min_score"] < 0  # still not a probability
    assert r["g_unchanged"]


def test_lipschitz_bound_holds_for_a_random_clipped_critic():
    from reference import gan, recipes

    spec = recipes.default_config("gaussian1d", 1, "wasserstein").spec
    params = gan.clip_weights(gan.init_params(spec, 3), 0.01)
    x = np.linspace(-5, 5, 2001)[:, None]
    scores = gan.discriminate(spec, params, x)[:, 0]
    slopes = np.abs(np.diff(scores) / np.diff(x[:, 0]))
    assert slopes.max() <= wasserstein_critic.lipschitz_bound(spec, 0.01)
    assert wasserstein_critic.wasserstein1_1d(np.array([0.0, 1.0]), np.array([3.0, 1.0])) == pytest.approx(1.5)
