"""From the composed config to everything one training needs, in memory: nothing is written.

`build(cfg)` gives a `Run`: device, data, model, optimizer, schedule, weight
average, the seeded generator and autocast settings. It comes in two steps,
`build_setup` (the config's checks, the device and the net: no data read) and the
rest, so that a trainer can put the run on record before the data loads, and a
run whose data cannot be read is on record as failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from mnist_sweep.errors import UserError
from mnist_sweep.run.averaging import WeightAverage, build_average
from mnist_sweep.run.data import DeviceData, prepare_data
from mnist_sweep.run.distill import load_teacher
from mnist_sweep.run.memory import build_fitting
from mnist_sweep.run.model import build_model, count_params
from mnist_sweep.run.optim import build_optimizer, build_scheduler, steps_per_epoch

Autocast = Callable[[], contextlib.AbstractContextManager]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            "trainer.device=cuda but no CUDA device is available; use trainer.device=cpu"
        )
    return torch.device(name)


def autocast_context(precision: str, device: torch.device) -> Autocast:
    if str(precision) == "32":
        return contextlib.nullcontext
    # The schema admits "32" and "bf16" only.
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` intra-op CPU threads (None: torch's default), then restore.

    On a machine that others share, one thread beats several for these small
    nets: each op ends in a barrier that waits for whichever thread the OS has
    just descheduled (docs/BENCHMARKS.md).
    """
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_model(model: nn.Module, trainer_cfg: Any, device: torch.device) -> nn.Module:
    """Move the model to the device, in the memory layout the trainer config asks for."""
    model = model.to(device)
    if trainer_cfg.get("channels_last", False):
        # NHWC activations: oneDNN's convolutions and BatchNorm run faster on them
        # than on NCHW. The images have one channel, so they need no conversion.
        model = model.to(memory_format=torch.channels_last)
    return model


# Evaluation batch when data.eval_batch_size is null. On a CPU a batch that
# outgrows the caches runs slower (docs/BENCHMARKS.md); on a GPU, larger batches
# keep it busy.
CPU_EVAL_BATCH, GPU_EVAL_BATCH = 128, 2000


def eval_batch_size(data_cfg: Any, device: torch.device) -> int:
    """`data.eval_batch_size`, or the device's default when it is null."""
    size = data_cfg.get("eval_batch_size")
    if size is None:
        return CPU_EVAL_BATCH if device.type == "cpu" else GPU_EVAL_BATCH
    return size


@dataclass
class TrainingSetup:
    """What the config settles before any data is read: where and how to train, and the net."""

    cfg: DictConfig
    device: torch.device
    autocast: Autocast
    generator: torch.Generator  # data order and augmentation; dropout draws from torch's own
    model: nn.Module  # on the CPU, as built
    params: int
    epochs: int
    eval_batch_size: int

    @property
    def device_name(self) -> str:
        """The device as a run's record names it: the GPU's model, or cpu."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return "cpu"


@dataclass
class Run(TrainingSetup):
    """A net ready to train: its data on the device, optimizer, schedule and average."""

    data: DeviceData
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    average: WeightAverage | None
    steps_per_epoch: int
    teacher: nn.Module | None = None  # frozen; its outputs are a second target (run/distill.py)

    def shipped(self) -> nn.Module:
        """The weights this run evaluates and ships: the average, once it holds any."""
        return self.average.eval_model(self.model) if self.average is not None else self.model


def build_setup(cfg: DictConfig) -> TrainingSetup:
    """Device, seeds and the net; raises UserError (an impossible architecture among
    them) before anything slow happens."""
    device = resolve_device(cfg.trainer.device)
    autocast = autocast_context(cfg.trainer.precision, device)
    torch.manual_seed(cfg.trainer.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.trainer.seed)

    def layout() -> nn.Module:
        return build_model(cfg.model, cfg.dropout.p, cfg.dropout.get("placement", "unit"))

    model = build_fitting(layout, cfg.data.batch_size, device)  # a net too large is never allocated
    return TrainingSetup(
        cfg=cfg,
        device=device,
        autocast=autocast,
        generator=generator,
        model=model,
        params=count_params(model),
        epochs=cfg.trainer.epochs,
        eval_batch_size=eval_batch_size(cfg.data, device),
    )


def build(cfg: DictConfig, setup: TrainingSetup | None = None) -> Run:
    """Everything `cfg` asks for, from `setup` if it was built already (else built here)."""
    setup = setup if setup is not None else build_setup(cfg)
    teacher = load_teacher(cfg.get("distill"))  # a bad folder fails before the data
    if teacher is not None:
        teacher = prepare_model(teacher, cfg.trainer, setup.device)
    data = prepare_data(cfg.data, setup.device)
    model = prepare_model(setup.model, cfg.trainer, setup.device)
    optimizer = build_optimizer(cfg.optimizer, model)
    steps = steps_per_epoch(data.n_train, cfg.data.batch_size)
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps, setup.epochs)
    average = build_average(cfg.get("average"), model, steps * setup.epochs)
    return Run(
        **{**vars(setup), "model": model},
        data=data,
        optimizer=optimizer,
        scheduler=scheduler,
        average=average,
        steps_per_epoch=steps,
        teacher=teacher,
    )
