"""Benchmarks: the project's training path and sweep against their baselines, each
measured in one run. Nothing in training or search imports this package."""
