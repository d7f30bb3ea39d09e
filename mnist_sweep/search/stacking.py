"""Where a sweep's trainings run: how many at once, on which GPU, and whether a trial's
seeds train stacked.

On a GPU a design's seeds train as one stacked job (stack/train.py): K copies
cost about what one costs, since a net this small leaves the GPU waiting on kernel
launches, so the trial trains all of its seeds at once and is pruned on their mean.
On a CPU each copy costs a whole training, so a trial trains one seed first and
more only while they can change its verdict (search/seeds.py).

A worker owns a whole GPU: processes sharing one take turns (time-slicing) and
gain nothing, so a sweep runs at most one worker per GPU, each on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    workers: int  # trainings at once
    stack: bool = False  # a trial's seeds as one stacked job
    gpus: int = 0  # > 1: each worker trains on a GPU of its own


def place(
    device: str, n_jobs: int, seeds: int, stack: bool | None, gpus: int | None = None
) -> Placement:
    """The placement for trainer.device on this machine (or one with `gpus` GPUs), with
    `auto` resolved as run/build.py resolves it; `stack` is hydra.sweeper.stack_seeds
    (None: stack exactly on a GPU)."""
    gpus = _cuda_devices(device) if gpus is None else gpus
    on_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    stacked = seeds > 1 and (on_gpu if stack is None else stack)
    spread = gpus if device in ("auto", "cuda") else 0  # cuda:N pins every worker to one
    workers = min(n_jobs, max(spread, 1)) if on_gpu else n_jobs
    if workers < n_jobs:
        log.info(
            "n_jobs=%d: %d worker(s), one per GPU (sharing one gains nothing)", n_jobs, workers
        )
    if stacked:
        log.info("each trial trains its %d seeds as one stacked job", seeds)
    return Placement(workers, stacked, spread)


def _cuda_devices(device: str) -> int:
    # A CPU sweep need not import torch (slow) to learn that it trains on no GPU.
    if device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def stacked_overrides(overrides: Sequence[str], seeds: Sequence[int]) -> list[str]:
    """A trial's job overrides that train `seeds` as one stacked job."""
    kept = [
        o for o in overrides if not o.lstrip("+~").startswith(("trainer.seed=", "trainer.seeds="))
    ]
    return [*kept, f"trainer.seed={seeds[0]}", f"trainer.seeds=[{','.join(map(str, seeds))}]"]


def first_seed(overrides: Sequence[str], default: int) -> int:
    """The seed a trial starts from: its `trainer.seed` override, else the config's."""
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key == "trainer.seed":
            return int(value)
    return default
