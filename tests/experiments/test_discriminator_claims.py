"""The optimal discriminator and convergence experiments, at small sizes, against known formulas."""

import numpy as np
import pytest

from experiments import convergence, optimal_discriminator
from experiments.optimal_discriminator import DATA_MEAN, DATA_STD, normal_pdf, optimal_d


def test_optimal_d_formula():
    x = np.linspace(-3, 11, 57)
    # A perfect generator: D* = 1/2 everywhere.
    np.testing.assert_allclose(optimal_d(x, DATA_MEAN, DATA_STD), 0.5, atol=1e-15)
    # Otherwise p_data / (p_data + p_g), checked against the densities written out by hand.
    p_data = np.exp(-0.5 * ((x - 4.0) / 1.25) ** 2) / (1.25 * np.sqrt(2 * np.pi))
    p_g = np.exp(-0.5 * (x - 2.0) ** 2) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(optimal_d(x, 2.0, 1.0), p_data / (p_data + p_g), rtol=1e-12)
    assert normal_pdf(4.0, 4.0, 1.25) == pytest.approx(1 / (1.25 * np.sqrt(2 * np.pi)))


@pytest.fixture(scope="module")
def trained():
    return optimal_discriminator.run(steps=300, seed=0)


def test_perfect_generator_leaves_d_at_one_half(trained):
    r = trained["perfect"]
    assert r["max_abs_error"] < 0.05  # |D(x) - 1/2| wherever the data has mass
    assert abs(r["accuracy"] - 0.5) < 0.02  # a coin flip
    assert r["d_loss"] == pytest.approx(2 * np.log(2), abs=0.01)  # the cross-entropy of answering 1/2
    assert r["best_loss"] == pytest.approx(2 * np.log(2), abs=1e-12)


def test_d_reaches_the_optimal_discriminator_of_an_imperfect_generator(trained):
    r = trained["imperfect"]
    assert r["mean_abs_error"] < 0.03 and r["max_abs_error"] < 0.1
    # Its accuracy and loss come close to the best any classifier can do, and not better than sampling noise allows.
    assert r["best_accuracy"] - 0.01 < r["accuracy"] < r["best_accuracy"] + 0.01
    assert r["best_loss"] - 0.005 < r["d_loss"] < r["best_loss"] + 0.02
    assert r["best_accuracy"] > 0.75  # and that is far from a coin flip: G is visibly wrong


def test_d_accuracy_falls_toward_one_half_as_g_learns():
    results = convergence.run(steps=300, seed=0, window=25, check_every=50)
    s = convergence.summary(results)
    assert s["first_window"] > 0.75  # early: D tells G's samples apart easily
    assert abs(s["second_half"] - 0.5) < 0.06  # later: about a coin flip
    assert s["initial_w1"] > 3.0 and s["late_w1_max"] < 1.0  # ... because G moved onto the data
    assert len(results["accuracy"]) == 300 and len(results["checks"]) == 1 + 300 // 50
