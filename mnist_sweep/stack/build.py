"""From one composed config and K seeds to one stacked run in memory: nothing is written.

Each copy is built exactly as its solo run builds it (run/build.py's
`build_setup` under the copy's own `trainer.seed`, then its teacher, which
draws from the same global generator), so its initial weights, its data
generator and its dropout stream are the solo run's. Then the copies' nets are
stacked (stack/net.py) and given one optimizer, one schedule and one weight
average: all three are elementwise over the stacked tensors, and the schedule
is the same for every copy, so each copy's update is its solo update.
The data and the teacher are loaded once and shared.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, open_dict
from torch import nn

from mnist_sweep.errors import UserError
from mnist_sweep.run.averaging import WeightAverage, build_average
from mnist_sweep.run.build import Autocast, TrainingSetup, build_setup, prepare_model
from mnist_sweep.run.data import DeviceData, prepare_data
from mnist_sweep.run.distill import load_teacher
from mnist_sweep.run.optim import build_optimizer, build_scheduler, steps_per_epoch
from mnist_sweep.stack.dropout import DropoutLayer, plan
from mnist_sweep.stack.net import StackedNet


def check_seeds(seeds: object) -> list[int]:
    """`trainer.seeds` as a list of distinct seeds; UserError (one line) otherwise."""
    values = list(seeds) if isinstance(seeds, list | tuple | ListConfig) else None
    if not values:
        raise UserError(f"trainer.seeds={seeds}: give a non-empty list of seeds, e.g. '[41,42,43]'")
    if any(type(s) is not int or s < 0 for s in values):
        raise UserError(f"trainer.seeds={values}: every seed must be a whole number >= 0")
    if len(set(values)) != len(values):
        raise UserError(f"trainer.seeds={values}: a seed is given twice; each copy needs its own")
    return [int(s) for s in values]


def seed_config(cfg: DictConfig, seed: int) -> DictConfig:
    """The config of one copy: its solo run's, `trainer.seed=seed` and no `trainer.seeds`."""
    one = copy.deepcopy(cfg)
    with open_dict(one):
        one.trainer.seed = seed
        one.trainer.seeds = None
    return one


def _global_stream(device: torch.device) -> torch.Generator:
    """A generator holding the state of torch's global one for `device` now: where the
    solo run's dropout draws come from."""
    generator = torch.Generator(device=device)
    if device.type == "cuda":
        generator.set_state(torch.cuda.get_rng_state(device))
    else:
        generator.set_state(torch.get_rng_state())
    return generator


@dataclass
class Copy:
    """One of the K trainings: its seed, solo config and random streams."""

    seed: int
    cfg: DictConfig
    setup: TrainingSetup  # its solo build: the net (as built, on the CPU) and data generator
    dropout: torch.Generator  # the solo run's global stream, for its dropout masks
    alive: bool = True  # False once it diverged: it is no longer trained or written

    @property
    def generator(self) -> torch.Generator:
        return self.setup.generator


@dataclass
class StackedSetup:
    """The copies, built: nothing read from disk but the teacher."""

    cfg: DictConfig
    copies: list[Copy]
    teacher: nn.Module | None
    dropout_layers: list[DropoutLayer]

    @property
    def device(self) -> torch.device:
        return self.copies[0].setup.device

    @property
    def params(self) -> int:
        return self.copies[0].setup.params


@dataclass
class StackedRun:
    """K copies ready to train together."""

    cfg: DictConfig
    copies: list[Copy]
    device: torch.device
    autocast: Autocast
    net: StackedNet
    data: DeviceData
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    average: WeightAverage | None
    steps_per_epoch: int
    epochs: int
    eval_batch_size: int
    params: int
    teacher: nn.Module | None
    dropout_layers: list[DropoutLayer] = field(default_factory=list)
    graphed: Any = None  # stack/graph.py's GraphedTraining, once captured (CUDA only)

    def shipped(self) -> StackedNet:
        """The weights every copy evaluates and ships: the average, once it holds any."""
        if self.average is None:
            return self.net
        shipped = self.average.eval_model(self.net)
        assert isinstance(shipped, StackedNet)
        return shipped

    def alive(self) -> torch.Tensor:
        """Which copies still train, on the device, (K,) bool."""
        return torch.tensor([c.alive for c in self.copies], device=self.device)


def build_copies(cfg: DictConfig, seeds: list[int]) -> StackedSetup:
    """Every copy's solo setup and random streams, and the teacher (one, shared)."""
    copies, teacher = [], None
    for seed in seeds:
        one = seed_config(cfg, seed)
        setup = build_setup(one)  # torch.manual_seed(seed), then the net
        # The solo run loads its teacher next, and the teacher's construction draws
        # from the global generator: so must each copy's, before its stream is taken.
        loaded = load_teacher(one.get("distill"))
        teacher = teacher if teacher is not None else loaded
        copies.append(Copy(seed, one, setup, _global_stream(setup.device)))
    if teacher is not None:
        teacher = prepare_model(teacher, cfg.trainer, copies[0].setup.device)
    return StackedSetup(cfg, copies, teacher, plan(copies[0].setup.model))


def assemble(stacked: StackedSetup, data: DeviceData) -> StackedRun:
    """Stack the copies' nets on the device and give them their optimizer, schedule and
    average."""
    cfg, device = stacked.cfg, stacked.device
    models = [prepare_model(c.setup.model, cfg.trainer, device) for c in stacked.copies]
    net = StackedNet(models).to(device)
    optimizer = build_optimizer(cfg.optimizer, net)
    steps = steps_per_epoch(data.n_train, cfg.data.batch_size)
    epochs = cfg.trainer.epochs
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps, epochs)
    average = build_average(cfg.get("average"), net, steps * epochs)
    first = stacked.copies[0].setup
    return StackedRun(
        cfg=cfg,
        copies=stacked.copies,
        device=device,
        autocast=first.autocast,
        net=net,
        data=data,
        optimizer=optimizer,
        scheduler=scheduler,
        average=average,
        steps_per_epoch=steps,
        epochs=epochs,
        eval_batch_size=first.eval_batch_size,
        params=first.params,
        teacher=stacked.teacher,
        dropout_layers=stacked.dropout_layers,
    )


def build_stacked(cfg: DictConfig, seeds: list[int]) -> StackedRun:
    """`build_copies`, the data (once), then `assemble`."""
    stacked = build_copies(cfg, seeds)
    return assemble(stacked, prepare_data(cfg.data, stacked.device))
