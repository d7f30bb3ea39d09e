"""Optimizer and learning-rate schedule construction.

The `optimizer` group is a partial torch optimizer (`_partial_: true`); the
`scheduler` group is a partial of one of the factories below. Every schedule
steps once per batch, and its step counts come from the data size, batch size
and epochs, so users never type them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hydra.utils import instantiate
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, OneCycleLR, StepLR

from mnist_sweep.errors import UserError

# Config-controlled _target_s may only name these (Hydra 1.4's execution whitelist).
TRUSTED_TARGETS = ["torch.optim.*", "mnist_sweep.run.optim.*"]


def build_optimizer(optimizer_cfg: Any, model: torch.nn.Module) -> Optimizer:
    return instantiate(optimizer_cfg, _execution_whitelist_=TRUSTED_TARGETS)(
        params=model.parameters()
    )


def build_scheduler(
    scheduler_cfg: Any, optimizer: Optimizer, steps_per_epoch: int, epochs: int
) -> LRScheduler:
    return instantiate(scheduler_cfg, _execution_whitelist_=TRUSTED_TARGETS)(
        optimizer, steps_per_epoch=steps_per_epoch, total_steps=steps_per_epoch * epochs
    )


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return math.ceil(n_train / batch_size)


def _base_lr(optimizer: Optimizer) -> float:
    return optimizer.param_groups[0]["lr"]


def onecycle(
    optimizer: Optimizer,
    *,
    steps_per_epoch: int,
    total_steps: int,
    pct_start: float = 0.25,
    div_factor: float = 10.0,
    final_div_factor: float = 100.0,
    anneal_strategy: str = "cos",
) -> LRScheduler:
    """One-cycle schedule peaking at the optimizer's configured lr (cos or linear ramps)."""
    if total_steps < 3:
        raise UserError(
            f"scheduler=onecycle needs at least 3 optimizer steps, this run has {total_steps}; "
            "train longer or use scheduler=none"
        )
    return OneCycleLR(
        optimizer,
        max_lr=_base_lr(optimizer),
        total_steps=total_steps,
        # Very short runs still need a warm-up phase of at least one step.
        pct_start=max(pct_start, 2 / total_steps),
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        anneal_strategy=anneal_strategy,
    )


def step(
    optimizer: Optimizer,
    *,
    steps_per_epoch: int,
    total_steps: int,
    every_epochs: int = 6,
    gamma: float = 0.1,
) -> LRScheduler:
    return StepLR(optimizer, step_size=every_epochs * steps_per_epoch, gamma=gamma)


def cosine(
    optimizer: Optimizer, *, steps_per_epoch: int, total_steps: int, min_lr_factor: float = 0.0
) -> LRScheduler:
    return CosineAnnealingLR(
        optimizer, T_max=total_steps, eta_min=_base_lr(optimizer) * min_lr_factor
    )


def constant(optimizer: Optimizer, *, steps_per_epoch: int, total_steps: int) -> LRScheduler:
    return LambdaLR(optimizer, lambda _: 1.0)
