"""ganspec's reference GAN: pure NumPy, float64, every gradient written by hand. Read it top to bottom:

    activations.py  the nonlinearities and their derivatives
    mlp.py          dense layers, the MLP, forward and backward; the parameter layout
    losses.py       minimax, non-saturating and Wasserstein losses on logits, with gradients
    optim.py        SGD, Adam and RMSprop as pure update functions
    gan.py          G and D, the D step and the G step (the other network frozen), weight clipping
    train.py        alternating training: k D steps then m G steps, all randomness as inputs
    data.py         the toy datasets (1-D Gaussian, ring, grid, swiss roll)
    metrics.py      mode coverage of mixtures (PacGAN protocol)
    recipes.py      the default settings every command line starts from
    __main__.py     python -m reference train: the small command line

docs/course/ walks through these files chapter by chapter.
"""
