"""(b) The project's own path, built as `train()` builds it and timed an epoch at a time:
`prepare_data`, `prepare_model`, `train_epoch`."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnist_sweep.run.data import DeviceData, prepare_data
from mnist_sweep.run.model import build_model
from mnist_sweep.run.optim import build_optimizer, build_scheduler, steps_per_epoch
from mnist_sweep.run.train import (
    autocast_context,
    cpu_threads,
    prepare_model,
    sync,
    train_epoch,
)


def with_changes(cfg: DictConfig, **changes: Any) -> DictConfig:
    """A copy of the config with dotted keys set (`data__train_subset=...`)."""
    cfg = copy.deepcopy(cfg)
    for key, value in changes.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False)
    return cfg


@dataclasses.dataclass
class ProjectRun:
    """Everything `train()` builds before its epoch loop, for timing `train_epoch` alone."""

    cfg: DictConfig
    model: nn.Module
    data: DeviceData
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    autocast: Callable[[], contextlib.AbstractContextManager]

    def epoch(self, data: DeviceData | None = None) -> tuple[float, float]:
        return train_epoch(
            self.model,
            self.data if data is None else data,
            self.optimizer,
            self.scheduler,
            self.cfg,
            self.generator,
            self.autocast,
        )


def project_run(cfg: DictConfig, device: torch.device, epochs: int) -> ProjectRun:
    """Data, model, optimizer and schedule as `train()` builds them (seeded the same way)."""
    torch.manual_seed(cfg.trainer.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.trainer.seed)
    model = prepare_model(build_model(cfg.model, cfg.dropout.p), cfg.trainer, device)
    data = prepare_data(cfg.data, device)
    optimizer = build_optimizer(cfg.optimizer, model)
    scheduler = build_scheduler(
        cfg.scheduler, optimizer, steps_per_epoch(data.n_train, cfg.data.batch_size), epochs
    )
    return ProjectRun(
        cfg=cfg,
        model=model,
        data=data,
        optimizer=optimizer,
        scheduler=scheduler,
        generator=generator,
        autocast=autocast_context(cfg.trainer.precision, device),
    )


def _first_batches(data: DeviceData, images: int) -> DeviceData:
    return dataclasses.replace(data, train_x=data.train_x[:images], train_y=data.train_y[:images])


def warmed_run(
    cfg: DictConfig, device: torch.device, epochs: int, warmup_images: int
) -> tuple[ProjectRun, float]:
    """`project_run`, then one short untimed epoch; returns the run and that epoch's seconds.

    Each timed round is one train_epoch over the whole (subset) training tensor;
    the warm-up is one more, shorter epoch, hence epochs = rounds + 1. It is
    where one-off costs (kernel selection) land.
    """
    run = project_run(cfg, device, epochs)
    with cpu_threads(cfg.trainer.get("threads")):
        t0 = time.perf_counter()
        run.epoch(_first_batches(run.data, warmup_images))
        sync(device)
        return run, time.perf_counter() - t0


def timed_epoch(run: ProjectRun) -> float:
    """images/s of one train_epoch, under the run's own thread count."""
    with cpu_threads(run.cfg.trainer.get("threads")):
        t0 = time.perf_counter()
        run.epoch()  # ends with .item(): the device is done when it returns
        return run.data.n_train / (time.perf_counter() - t0)
