"""Hydra + Optuna sweeps for the smallest MNIST network that reaches a target accuracy."""
