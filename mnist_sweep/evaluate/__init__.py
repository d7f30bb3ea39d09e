"""`python -m mnist_sweep.evaluate RUN_DIR`: re-evaluate a run's checkpoint (cli.py), or
predict the user's own digit images with it."""
