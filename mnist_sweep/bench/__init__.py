"""Benchmarks: the project's training path and sweep against their baselines, each
measured in one run, and pruners replayed on finished runs (prune_replay.py). Nothing in
training or search imports this package."""
