"""Experiments that reproduce the GAN primer's claims with the NumPy reference (docs/course/).

Each one is a small script: it trains or probes reference GANs, prints the figures it measured, and writes
one PNG to docs/course/figures/. Run any of them from the repository root, e.g.

    python -m experiments.optimal_discriminator
    python experiments/saturation.py --seed 1 --out-dir /tmp/figs

    optimal_discriminator  D trained against a fixed G reaches D* = p_data / (p_data + p_g); 1/2 for a perfect G
    convergence            D's accuracy falls toward 50% as G learns the 1-D Gaussian
    saturation             the minimax G loss saturates as D(G(z)) -> 0, the non-saturating one does not
    wasserstein_critic     critic scores are unbounded without clipping; clipping keeps every weight in [-c, c]
    vanishing_gradients    G's gradient against a near-optimal D: saturating vs non-saturating vs Wasserstein
    mode_collapse          modes of the 8-Gaussian ring captured over training, per loss and seed

Every experiment uses only the public API of reference/ and is deterministic given its seed.
"""
