"""The GAN losses, computed from D's raw outputs (logits), each with its gradient.

D's last layer has no sigmoid: it outputs a logit l, and D(x) = sigmoid(l) is the probability that x is
real. Writing the log-probabilities in terms of l avoids ever computing log(0):

    log D(x)       = log sigmoid(l)  = -softplus(-l)        softplus(u) = log(1 + e^u)
    log(1 - D(x))  = log sigmoid(-l) = -softplus(l)
    d/dl softplus(l)  = sigmoid(l)
    d/dl softplus(-l) = -sigmoid(-l)            (equal to sigmoid(l) - 1, but exact for large l)

softplus(u) is computed as logaddexp(0, u), which is exact and finite for any finite u, so every loss
below is finite for logits of any size (tested up to |l| = 1e4). Every loss is a mean over the batch;
its gradient with respect to one logit therefore carries a factor 1/B.

For the Wasserstein loss, the "critic" C has the same architecture, but its output is an unbounded score,
not a logit, and no sigmoid is ever applied.

Every function returns the loss (a Python float) and the gradient(s) with respect to its input(s),
with the inputs' shapes, (B, 1).
"""

import numpy as np

from .activations import sigmoid

LOSSES = ("minimax", "nonsaturating", "wasserstein")


def softplus(u):
    """log(1 + e^u), finite for every finite u (never computes e^u for large u)."""
    return np.logaddexp(0.0, u)


def check_loss(kind: str) -> str:
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")
    return kind


# ----- The discriminator's loss (minimax and non-saturating GANs share it) -----

def minimax_d_loss(real_logits, fake_logits):
    """-E[log D(x)] - E[log(1 - D(G(z)))] = mean softplus(-l_real) + mean softplus(l_fake).

    This is the binary cross-entropy with real labelled 1 and fake labelled 0.
        dL/dl_real = -sigmoid(-l_real) / B_real
        dL/dl_fake = sigmoid(l_fake) / B_fake
    """
    n_real, n_fake = len(real_logits), len(fake_logits)
    loss = softplus(-real_logits).mean() + softplus(fake_logits).mean()
    grad_real = -sigmoid(-real_logits) / n_real  # (B_real, 1)
    grad_fake = sigmoid(fake_logits) / n_fake  # (B_fake, 1)
    return float(loss), grad_real, grad_fake


# ----- The generator's losses -----

def minimax_g_loss(fake_logits):
    """The original (saturating) generator loss: E[log(1 - D(G(z)))] = -mean softplus(l_fake).

        dL/dl_fake = -sigmoid(l_fake) / B

    When D confidently rejects the fakes (l_fake -> -inf, D(G(z)) -> 0) this gradient goes to 0:
    G stops learning exactly when it is worst. That is the vanishing gradient of the primer.
    """
    n = len(fake_logits)
    loss = -softplus(fake_logits).mean()
    grad = -sigmoid(fake_logits) / n  # (B, 1)
    return float(loss), grad


def nonsaturating_g_loss(fake_logits):
    """The modified ("non-saturating") generator loss: -E[log D(G(z))] = mean softplus(-l_fake).

        dL/dl_fake = -sigmoid(-l_fake) / B

    As l_fake -> -inf this tends to -1/B, not 0: G keeps a strong gradient while D rejects its samples.
    """
    n = len(fake_logits)
    loss = softplus(-fake_logits).mean()
    grad = -sigmoid(-fake_logits) / n  # (B, 1)
    return float(loss), grad


# ----- The Wasserstein losses (WGAN) -----

def wasserstein_critic_loss(real_scores, fake_scores):
    """E[C(G(z))] - E[C(x)]: the critic maximises C(x) - C(G(z)), so it minimises this.

        dL/dc_real = -1 / B_real,   dL/dc_fake = 1 / B_fake
    """
    n_real, n_fake = len(real_scores), len(fake_scores)
    loss = fake_scores.mean() - real_scores.mean()
    grad_real = np.full_like(real_scores, -1.0 / n_real)  # (B_real, 1)
    grad_fake = np.full_like(fake_scores, 1.0 / n_fake)  # (B_fake, 1)
    return float(loss), grad_real, grad_fake


def wasserstein_g_loss(fake_scores):
    """-E[C(G(z))]: the generator maximises the critic's score of its samples.  dL/dc_fake = -1 / B."""
    n = len(fake_scores)
    return float(-fake_scores.mean()), np.full_like(fake_scores, -1.0 / n)


# ----- Dispatch by the name of the GAN's loss -----

def d_loss(kind: str, real_out, fake_out):
    """D's (or the critic's) loss for this kind of GAN: (loss, dL/d real_out, dL/d fake_out)."""
    if check_loss(kind) == "wasserstein":
        return wasserstein_critic_loss(real_out, fake_out)
    return minimax_d_loss(real_out, fake_out)


def g_loss(kind: str, fake_out):
    """G's loss for this kind of GAN: (loss, dL/d fake_out)."""
    kind = check_loss(kind)
    if kind == "minimax":
        return minimax_g_loss(fake_out)
    if kind == "nonsaturating":
        return nonsaturating_g_loss(fake_out)
    return wasserstein_g_loss(fake_out)
