"""A stand-in teacher for timing: the teacher's net with untrained weights, as a finished run.

`experiment=smallest` distils from outputs/teacher_8128, which a fresh machine
does not have, and training it first would take longer than the benchmark.
What a teacher costs a step does not depend on its weights, so the bench can
time with a stand-in: the net of `experiment=teacher_8128`, freshly
initialised, written as a finished run folder that `load_teacher` accepts.
Its accuracy is meaningless; only timings may be taken with it.
"""

from __future__ import annotations

import socket
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.bench.timing import with_changes
from mnist_sweep.config import compose_config
from mnist_sweep.run import record
from mnist_sweep.run.model import build_model, count_params

TEACHER = "teacher_8128"


def needs_stand_in(cfg: DictConfig) -> bool:
    """The config distils from a teacher folder that is not there."""
    distill = cfg.get("distill")
    if distill is None or distill.get("teacher") is None or float(distill.alpha) == 0:
        return False
    return not (Path(distill.teacher).expanduser() / record.HYDRA_CONFIG).is_file()


def with_stand_in_teacher(cfg: DictConfig, folder: Path) -> DictConfig:
    """`cfg` distilling from a stand-in teacher written into `folder`."""
    teacher_cfg = compose_config([f"experiment={TEACHER}"])
    model = build_model(teacher_cfg.model, teacher_cfg.dropout.p, teacher_cfg.dropout.placement)
    resolved = OmegaConf.to_container(teacher_cfg, resolve=True)
    assert isinstance(resolved, dict)
    resolved.pop("hydra", None)
    record.save_checkpoint(
        folder, record.Checkpoint(state_dict=model.state_dict(), config=resolved, epoch=1)
    )
    (folder / record.HYDRA_DIR).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(teacher_cfg, folder / record.HYDRA_CONFIG)
    record.RunRecord(
        model=TEACHER,
        params=count_params(model),
        status=record.RunStatus.COMPLETED,
        target_acc=99.4,
        epochs_planned=1,
        seed=0,
        device="cpu",
        torch=str(torch.__version__),
        host=socket.gethostname(),
    ).save(folder)
    print(f"distill.teacher: a stand-in {TEACHER} (untrained) in {folder}; timings only")
    return with_changes(cfg, distill__teacher=str(folder))
