"""reference.data (the toy distributions, PacGAN's ring and grid) and reference.metrics (PacGAN's mode metrics)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import data, metrics

N = 20000  # samples for the empirical checks: relative standard errors ~1%


# ----- The mixtures are PacGAN's -----

def test_ring_is_8_modes_on_the_unit_circle_with_sigma_001():
    ring = data.get_dataset("ring")
    assert ring.dim == 2 and ring.sigma == 0.01 and ring.modes.shape == (8, 2)
    expected = [(math.cos(2 * math.pi * k / 8), math.sin(2 * math.pi * k / 8)) for k in range(8)]
    np.testing.assert_allclose(ring.modes, expected, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(ring.modes, axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(ring.modes[2], [0.0, 1.0], atol=1e-15)


def test_grid_is_25_modes_on_a_spacing_2_lattice_with_sigma_005():
    grid = data.get_dataset("grid")
    assert grid.dim == 2 and grid.sigma == 0.05 and grid.modes.shape == (25, 2)
    expected = {(x, y) for x in (-4.0, -2.0, 0.0, 2.0, 4.0) for y in (-4.0, -2.0, 0.0, 2.0, 4.0)}
    assert {tuple(m) for m in grid.modes.tolist()} == expected


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_mixture_samples_have_the_documented_means_stds_and_weights(name):
    dataset = data.get_dataset(name)
    x = dataset.sample(N, np.random.default_rng(0))
    assert x.shape == (N, 2) and x.dtype == np.float64
    nearest = np.linalg.norm(x[:, None] - dataset.modes[None], axis=2).argmin(axis=1)
    residual = x - dataset.modes[nearest]
    k = len(dataset.modes)
    counts = np.bincount(nearest, minlength=k)
    sd_count = math.sqrt(N * (1 / k) * (1 - 1 / k))
    assert np.all(np.abs(counts - N / k) < 5 * sd_count), counts  # each component with probability 1/K
    assert np.all(np.abs(residual.mean(axis=0)) < 5 * dataset.sigma / math.sqrt(N))
    np.testing.assert_allclose(residual.std(axis=0), dataset.sigma, rtol=0.03)
    for mode in range(k):  # per component, too
        np.testing.assert_allclose(residual[nearest == mode].std(axis=0), dataset.sigma, rtol=0.15)
    # 2-D isotropic Gaussian: P(|residual| <= 3 sigma) = 1 - exp(-9/2)
    within = np.mean(np.linalg.norm(residual, axis=1) <= 3 * dataset.sigma)
    assert within == pytest.approx(1 - math.exp(-4.5), abs=0.004)


def test_gaussian1d_mean_and_std():
    x = data.get_dataset("gaussian1d").sample(N, np.random.default_rng(1))
    assert x.shape == (N, 1)
    assert x.mean() == pytest.approx(4.0, abs=5 * 1.25 / math.sqrt(N))
    assert x.std() == pytest.approx(1.25, rel=0.03)


def test_swissroll_follows_its_spiral():
    x = data.get_dataset("swissroll").sample(N, np.random.default_rng(2))
    assert x.shape == (N, 2)
    t = 5 * np.linalg.norm(x, axis=1)  # |(t cos t, t sin t) / 5| = t / 5, up to the N(0, 0.05^2) noise
    assert t.min() > 1.5 * np.pi - 5 * 0.25 and t.max() < 4.5 * np.pi + 5 * 0.25
    assert t.mean() == pytest.approx(3 * np.pi, abs=0.1)  # the mean of U(1.5 pi, 4.5 pi)
    # distance to the noise-free spiral (arms 2 pi / 5 apart): the noise's component across the curve,
    # |N(0, 0.05^2)|, whose median is 0.6745 * 0.05 = 0.034
    ts = np.linspace(1.5 * np.pi, 4.5 * np.pi, 4000)
    curve = np.stack([ts * np.cos(ts), ts * np.sin(ts)], axis=1) / 5  # (4000, 2), points 0.005 apart at most
    distance = np.linalg.norm(x[:1500, None] - curve[None], axis=2).min(axis=1)
    assert np.median(distance) == pytest.approx(0.6745 * 0.05, rel=0.12)


@pytest.mark.parametrize("name", sorted(data.DATASETS))
def test_sampling_is_a_function_of_the_rng(name):
    dataset = data.get_dataset(name)
    a = dataset.sample(100, np.random.default_rng(5))
    b = dataset.sample(100, np.random.default_rng(5))
    c = dataset.sample(100, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.isfinite(a)) and a.shape == (100, dataset.dim)


# ----- Mode metrics on hand-built samples -----

RING, SIGMA = data.ring_modes(), 0.01


def offsets(n, radius, rng):
    """n 2-D offsets of length exactly `radius`, in random directions."""
    angles = rng.uniform(0, 2 * np.pi, n)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def test_all_samples_at_one_mode():
    samples = RING[3] + offsets(500, SIGMA, np.random.default_rng(0))
    m = metrics.mode_metrics(samples, RING, SIGMA)
    assert (m.modes_captured, m.num_modes, m.high_quality) == (1, 8, 1.0)
    assert m.reverse_kl == pytest.approx(math.log(8), rel=1e-14)


def test_a_perfectly_even_spread_has_reverse_kl_zero():
    samples = np.repeat(RING, 25, axis=0) + offsets(200, 2 * SIGMA, np.random.default_rng(1))
    m = metrics.mode_metrics(samples, RING, SIGMA)
    assert (m.modes_captured, m.high_quality) == (8, 1.0)
    assert m.reverse_kl == pytest.approx(0.0, abs=1e-15)


def test_points_four_sigmas_away_are_not_high_quality():
    far = np.repeat(RING, 10, axis=0) + offsets(80, 4 * SIGMA, np.random.default_rng(2))
    m = metrics.mode_metrics(far, RING, SIGMA)
    assert (m.modes_captured, m.high_quality) == (0, 0.0)
    assert math.isnan(m.reverse_kl)  # no high-quality sample: the histogram is undefined
    near = np.repeat(RING, 10, axis=0) + offsets(80, 2.99 * SIGMA, np.random.default_rng(2))
    assert metrics.mode_metrics(near, RING, SIGMA).high_quality == 1.0
    just_out = np.repeat(RING, 10, axis=0) + offsets(80, 3.01 * SIGMA, np.random.default_rng(2))
    assert metrics.mode_metrics(just_out, RING, SIGMA).high_quality == 0.0


def test_mixed_by_hand():
    """6 high-quality samples (3 at mode 0, 2 at mode 1, 1 at mode 5) and 4 between modes."""
    samples = np.concatenate([np.repeat(RING[[0]], 3, axis=0), np.repeat(RING[[1]], 2, axis=0), RING[[5]],
                              np.full((4, 2), 0.1)])
    m = metrics.mode_metrics(samples, RING, SIGMA)
    p = np.array([3, 2, 1]) / 6
    assert (m.modes_captured, m.num_modes) == (3, 8)
    assert m.high_quality == pytest.approx(0.6)
    assert m.reverse_kl == pytest.approx(sum(pi * math.log(8 * pi) for pi in p), rel=1e-14)
    assert str(m) == f"modes captured 3/8, high-quality samples 60.0%, reverse KL {m.reverse_kl:.3f}"
    assert m.to_dict() == {"modes_captured": 3, "num_modes": 8, "high_quality": m.high_quality,
                           "reverse_kl": m.reverse_kl}


def test_samples_are_assigned_to_their_nearest_mode_on_the_grid():
    grid = data.get_dataset("grid")
    # (3.9, 4) is 0.1 = 2 sigma from (4, 4); (-2.02, 0.03) is 0.036 from (-2, 0); (1, 1) is sqrt 2 from 4 modes
    samples = np.array([[3.9, 4.0], [-2.02, 0.03], [1.0, 1.0]])
    m = metrics.mode_metrics(samples, grid.modes, grid.sigma)
    assert (m.modes_captured, m.num_modes) == (2, 25)
    assert m.high_quality == pytest.approx(2 / 3)
    assert m.reverse_kl == pytest.approx(math.log(25 / 2), rel=1e-14)  # p = (1/2, 1/2): ln(25 * 1/2)


@given(counts=st.lists(st.integers(0, 30), min_size=8, max_size=8).filter(lambda c: sum(c) > 0),
       misses=st.integers(0, 20), seed=st.integers(0, 2**16))
def test_against_the_formula_for_any_histogram(counts, misses, seed):
    """Samples within 3 sigma of the modes in the given counts, plus `misses` far from every mode."""
    rng = np.random.default_rng(seed)
    hits = np.repeat(RING, counts, axis=0)
    hits = hits + offsets(len(hits), 2.5 * SIGMA, rng) * rng.uniform(0, 1, (len(hits), 1))
    samples = np.concatenate([hits, 0.5 * offsets(misses, 1.0, rng)])  # radius 0.5: far from the unit circle
    m = metrics.mode_metrics(rng.permutation(samples), RING, SIGMA)
    total = sum(counts)
    assert m.modes_captured == sum(c > 0 for c in counts)
    assert m.high_quality == pytest.approx(total / (total + misses), rel=1e-14)
    kl = sum(c / total * math.log(8 * c / total) for c in counts if c > 0)
    assert m.reverse_kl == pytest.approx(kl, rel=1e-12, abs=1e-15)
    assert -1e-15 <= m.reverse_kl <= math.log(8) + 1e-12


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_the_true_distribution_scores_perfectly(name):
    dataset = data.get_dataset(name)
    m = metrics.mode_metrics(dataset.sample(N, np.random.default_rng(3)), dataset.modes, dataset.sigma)
    assert m.modes_captured == len(dataset.modes)
    assert m.high_quality == pytest.approx(1 - math.exp(-4.5), abs=0.004)
    assert 0 <= m.reverse_kl < 0.01  # sampling noise only
