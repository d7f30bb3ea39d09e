"""Knowledge distillation: a finished run's net as a second target for the one training.

The teacher is rebuilt from its run folder by `load_model` (the net its
.hydra/config.yaml describes, with the weights checkpoint.pt ships), frozen, and run
forward on the student's batches. The loss is Hinton et al.'s (2015): the
labels' cross-entropy weighted 1 - alpha, plus alpha times T^2 times the KL
divergence between the teacher's and the student's outputs at temperature T
(T^2 keeps the soft term's gradients on the scale of the hard one's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from mnist_sweep.errors import RunRecordError, UserError
from mnist_sweep.run import record
from mnist_sweep.run.load import load_model
from mnist_sweep.teachers import SHIPPED, shipped_teacher


class TeacherError(UserError):
    """distill.teacher names neither a shipped teacher nor a finished run folder."""


def load_teacher(distill_cfg: Any) -> nn.Module | None:
    """The frozen teacher that `distill` names, on the CPU in eval mode; None without one
    or with alpha 0 (its term would weigh nothing)."""
    if distill_cfg is None or distill_cfg.get("teacher") is None:
        return None
    if float(distill_cfg.get("alpha", 0.5)) == 0:
        return None
    given = str(distill_cfg.teacher)
    where = f"distill.teacher={given}"
    try:
        shipped = shipped_teacher(given)
    except UserError as e:
        raise TeacherError(f"{where}: {e}") from None
    # A shipped teacher's name, or a run folder (relative: from where the command started).
    run_dir = shipped or Path(given).expanduser().resolve()
    if not (run_dir / record.HYDRA_CONFIG).is_file():
        raise TeacherError(
            f"{where}: {run_dir} is not a run folder (no {record.HYDRA_CONFIG}); "
            "give the folder a finished training left, a shipped teacher's name "
            f"({', '.join(SHIPPED) or 'none shipped'}), or use distill=none"
        )
    try:
        run = record.RunRecord.load(run_dir)
    except RunRecordError as e:
        raise TeacherError(f"{where}: {e}; train the teacher to the end first") from None
    if run.status is not record.RunStatus.COMPLETED:
        raise TeacherError(
            f"{where}: that run is {run.status.value} after {len(run.epochs)} of "
            f"{run.epochs_planned} epochs; finish it first (the same command with "
            "trainer.resume=true), or give another"
        )
    try:
        teacher = load_model(run_dir)
    except UserError as e:
        raise TeacherError(f"{where}: {e}") from None
    teacher.requires_grad_(False)
    return teacher


def distillation_loss(
    logits: Tensor,
    labels: Tensor,
    teacher_logits: Tensor,
    alpha: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> Tensor:
    """(1 - alpha) * CE(logits, labels) + alpha * T^2 * KL(teacher || student) at temperature T."""
    hard = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    soft = F.kl_div(
        F.log_softmax(logits / temperature, dim=1),
        F.log_softmax(teacher_logits.float() / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - alpha) * hard + alpha * temperature**2 * soft
