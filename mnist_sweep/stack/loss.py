"""Each copy's loss over a stacked batch: the solo run's loss, batched over the copy axis."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from mnist_sweep.stack.build import StackedRun


def loss_function(run: StackedRun) -> Callable[[Tensor, Tensor, Tensor | None], Tensor]:
    """(logits (K,B,C), labels (K,B), teacher logits or None) -> each copy's mean loss (K,):
    the solo run's loss (run/distill.py's distillation_loss, or cross-entropy) over the
    copy axis, written batched because vmap runs kl_div one copy at a time."""
    cfg = run.cfg
    smoothing = float(cfg.trainer.get("label_smoothing", 0.0))
    distill = run.teacher is not None
    alpha = float(cfg.distill.alpha) if distill else 0.0
    temperature = float(cfg.distill.temperature) if distill else 1.0

    def losses(logits: Tensor, y: Tensor, teacher: Tensor | None) -> Tensor:
        k, b = y.shape
        hard = (
            F.cross_entropy(
                logits.flatten(0, 1), y.flatten(), label_smoothing=smoothing, reduction="none"
            )
            .view(k, b)
            .mean(1)
        )
        if teacher is None:
            return hard
        soft = (
            F.kl_div(
                F.log_softmax(logits / temperature, dim=-1),
                F.log_softmax(teacher.float() / temperature, dim=-1),
                reduction="none",
                log_target=True,
            ).sum((1, 2))
            / b
        )  # "batchmean": per copy, over its own batch
        return (1 - alpha) * hard + alpha * temperature**2 * soft

    return losses


def teacher_logits(run: StackedRun, x: Tensor) -> Tensor | None:
    """The teacher's logits for every copy's batch, in one pass (it is in eval mode, so
    each image's logits are its own)."""
    if run.teacher is None:
        return None
    with torch.no_grad():
        return run.teacher(x.flatten(0, 1)).view(*x.shape[:2], -1)
