"""Helpers shared by every part of the test suite.

    finite_diff   central-difference gradients of scalar functions of arrays or of parameter dicts,
                  and a relative-error check that says which entry is off
    strategies    Hypothesis strategies: MLP and GAN specs, optimizer hyperparameters, logits, batches
"""
