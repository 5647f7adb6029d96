"""The Dirac GAN experiment: one round against the formulas, and the chapter's claims at 1000 rounds."""

import numpy as np
import pytest

from experiments import failure_to_converge as ftc
from reference.activations import sigmoid


def test_one_plain_round_is_the_hand_derived_sgd_step():
    # D step on L_D = softplus(-(psi*0 + c)) + softplus(psi*theta + c), real x = 0, fake x = theta:
    #   dL/dpsi = sigmoid(psi*theta + c) * theta,  dL/dc = -sigmoid(-c) + sigmoid(psi*theta + c)
    # G step on the non-saturating L_G = softplus(-(psi*theta + c)):  dL/dtheta = -sigmoid(-(psi*theta + c)) * psi
    r = ftc.run_variant(1)
    theta, psi, c, lr = 1.0, 1.0, 0.0, 0.1
    psi1 = psi - lr * sigmoid(psi * theta + c) * theta
    c1 = c - lr * (-sigmoid(-c) + sigmoid(psi * theta + c))
    theta1 = theta + lr * sigmoid(-(psi1 * theta + c1)) * psi1
    np.testing.assert_allclose([r["theta"][1], r["psi"][1], r["c"][1]], [theta1, psi1, c1], rtol=1e-14)


@pytest.fixture(scope="module")
def results():
    return ftc.run(steps=1000, seed=0)


def test_plain_training_circles_the_equilibrium_without_reaching_it(results):
    r = results["plain"]
    assert r["radius"][1000] > 0.2  # 0.294 measured: after 1000 rounds still far from (0, 0)
    crossings = np.sum(np.diff(np.sign(r["theta"])) != 0)
    assert crossings >= 10  # G keeps overshooting the data, back and forth


def test_gradient_penalties_converge_to_the_equilibrium(results):
    assert results["R1 (gamma 1)"]["radius"][1000] < 1e-12  # 1.2e-17 measured
    assert results["Roth et al. (gamma 1)"]["radius"][1000] < 1e-8  # 8.7e-12 measured


def test_instance_noise_brings_g_near_the_data_but_not_onto_it(results):
    noisy, plain = results["instance noise (sigma 1)"], results["plain"]
    assert noisy["radius"][1000] < plain["radius"][1000] / 5  # 0.017 vs 0.294 measured
    assert np.min(noisy["radius"][500:]) > 1e-4  # the noise keeps it moving around the equilibrium


def test_wgan_gp_holds_g_where_the_penalty_balances_the_critic(results):
    # the penalty's two wells psi = +-1 hold a wrong-signed critic slope while theta < 2 lambda; G drifts to
    # theta = 2 lambda = 2, where the slope reaches 0 and G's gradient vanishes
    r = results["WGAN-GP (lambda 1)"]
    assert r["theta"][1000] == pytest.approx(2.0, abs=1e-6)
    assert abs(r["psi"][1000]) < 1e-6
