"""Weight averaging (the `average` config group), on torch.optim.swa_utils.

Small nets end a short one-cycle schedule with weights that still jitter from
batch to batch; averaging them over the last steps gives a final-epoch figure
that depends less on where the last batch happened to leave them.

- ema: an exponential moving average of every step's weights (and BatchNorm
  statistics), from the first step on. Its decay warms up as
  min(decay, (1 + n) / (10 + n)) after n updates, so that a short run's
  average is not held near the random initial weights.
- swa: the equal-weight average of every step's weights from a fraction
  `start` of the run on (BatchNorm statistics averaged alike, so no extra pass
  over the data is needed).

The averaged model is the one evaluated, saved and shipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class WeightAverage:
    """An AveragedModel plus the step from which it starts taking the weights in."""

    def __init__(self, model: nn.Module, kind: str, first_step: int, decay: float = 0.999):
        avg_fn = _ema_with_warmup(decay) if kind == "ema" else None
        self.averaged = AveragedModel(model, avg_fn=avg_fn, use_buffers=True)
        self.first_step = first_step
        self.step = 0

    def update(self, model: nn.Module) -> None:
        self.step += 1
        if self.step >= self.first_step:
            self.averaged.update_parameters(model)

    @property
    def started(self) -> bool:
        return int(self.averaged.n_averaged) > 0

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The averaged net once it holds any weights, the live one before."""
        return self.averaged.module if self.started else model

    def state_dict(self) -> dict[str, Any]:
        return {"averaged": self.averaged.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state["averaged"])
        self.step = state["step"]


def _ema_with_warmup(
    decay: float,
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    def avg_fn(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1 + float(n)) / (10 + float(n)))
        return averaged * d + current * (1 - d)

    return avg_fn


def build_average(average_cfg: Any, model: nn.Module, total_steps: int) -> WeightAverage | None:
    """The averager the `average` group asks for, or None for `average=none`."""
    kind = average_cfg.get("kind", "none") if average_cfg is not None else "none"
    if kind == "none":
        return None
    if kind == "ema":
        return WeightAverage(model, kind, first_step=1, decay=float(average_cfg.decay))
    start = average_cfg.start  # swa
    return WeightAverage(model, kind, first_step=max(1, math.floor(start * total_steps) + 1))
