"""The conditional GAN experiment at a small size: G generates the class it is asked for."""

import numpy as np

from experiments import conditional
from reference import data, metrics


def test_nearest_mode_classifies_by_the_nearest_mode_within_three_sigma():
    ds = data.get_dataset("ring")
    points = np.array([ds.modes[3], ds.modes[5] + [0.029, 0.0], ds.modes[0] + [0.031, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(metrics.nearest_mode(points, ds.modes, ds.sigma), [3, 5, -1, -1])


def test_a_conditional_gan_generates_the_requested_class():
    r = conditional.run_dataset("ring", steps=1000, seed=0)
    requested = np.array(r["requested"])
    assert requested.mean() > 0.9 and requested.min() > 0.8  # 0.97 and 0.88 measured
    # an unconditional GAN cannot be asked for a class: it lands on a given mode 1/8 of the time at best
    assert np.mean(r["plain_share"]) <= 1 / 8 + 1e-12
    assert r["classes"] == 8 and len(r["samples"]) == 8 and r["samples"][0].shape == (conditional.PER_CLASS, 2)


def test_labelled_samples_are_the_unlabelled_ones():
    ds = data.get_dataset("grid")
    x, y = ds.sample_labelled(500, np.random.default_rng(1))
    np.testing.assert_array_equal(x, ds.sample(500, np.random.default_rng(1)))
    assert np.all(np.linalg.norm(x - ds.modes[y], axis=1) < 6 * ds.sigma)
