"""(a) The reference pipeline the bench compares against, as the reference READMEs wrote it.

torchvision `MNIST` with per-sample PIL transforms behind a `DataLoader`, the net
built from torch's stock layers, and a plain step that reads `loss.item()` every
batch. It is deliberately not the project's path: it is the baseline the
project's path is measured against.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from mnist_sweep.run.model import Dropout, build_model

# The reference READMEs' normalisation and rotation, as they wrote them.
REF_MEAN, REF_STD = (0.1307,), (0.3081,)
REF_DEGREES = (-7.0, 7.0)


def reference_loader(
    root: str | Path,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    augment: bool = True,
    subset: int | None = None,
    order: Tensor | None = None,
) -> DataLoader:
    """The READMEs' loader: torchvision MNIST, PIL transforms per sample, worker processes.

    `order` replaces the shuffle with a fixed sample order (the accuracy check
    feeds both paths the same batches).
    """
    from torchvision import datasets, transforms  # slow to import; only this path needs it

    steps: list[Any] = [transforms.RandomRotation(REF_DEGREES, fill=0)] if augment else []
    steps += [transforms.ToTensor(), transforms.Normalize(REF_MEAN, REF_STD)]
    dataset: Any = datasets.MNIST(str(root), train=True, transform=transforms.Compose(steps))
    if subset is not None:
        dataset = Subset(dataset, range(subset))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=order is None,
        sampler=None if order is None else order.tolist(),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        # Its own generator, so the loader leaves the global RNG (dropout's) alone.
        generator=torch.Generator().manual_seed(0),
    )


def reference_model(cfg: DictConfig, device: torch.device) -> nn.Module:
    """The same net with torch's stock layers, as the READMEs built it.

    The project's Dropout draws its CPU mask more cheaply than nn.Dropout (same
    distribution); the reference must pay what the READMEs paid. Seeded like
    `build`, so both start from the same weights.
    """
    torch.manual_seed(cfg.trainer.seed)
    model = build_model(cfg.model, cfg.dropout.p)
    for i, layer in enumerate(model):
        if isinstance(layer, Dropout):
            model[i] = nn.Dropout(layer.p)
    return model.to(device)


def endless(loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches forever: a new epoch (and its worker start-up) whenever one runs out."""
    while True:
        yield from loader


def reference_steps(
    model: nn.Module,
    batches: Iterator[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    count: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """The READMEs' training step, `count` times."""
    model.train()
    for x, y in itertools.islice(batches, count):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss.item()  # the READMEs print it on their tqdm bar every step
