"""Hydra + Optuna sweeps for the smallest MNIST network that reaches a target accuracy."""

from __future__ import annotations

from typing import Any

__all__ = ["load_model"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `load_model` needs torch, whose seconds of start-up
    # commands such as `compare` (which import this package first) should not pay.
    if name == "load_model":
        from mnist_sweep.run.load import load_model

        return load_model
    raise AttributeError(f"module 'mnist_sweep' has no attribute {name!r}")
