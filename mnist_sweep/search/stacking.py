"""Where a trial's seeds train, and how many trainings a machine runs at once.

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

log = logging.getLogger(__name__)


def on_gpu(device: str, cuda_devices: int) -> bool:
    """Whether the sweep's trainings run on a GPU (trainer.device, with `auto` resolved
    as run/build.py resolves it)."""
    return device.startswith("cuda") or (device == "auto" and cuda_devices > 0)


def stacks_seeds(device: str, seeds: int, cuda_devices: int, asked: bool | None = None) -> bool:
    """The policy: stack a trial's seeds when it has several and they train on a GPU, or
    when the sweep asks (hydra.sweeper.stack_seeds)."""
    if seeds <= 1:
        return False
    return on_gpu(device, cuda_devices) if asked is None else asked


def gpu_workers(n_jobs: int, device: str, cuda_devices: int) -> int:
    """How many workers may train at once: one per GPU on a GPU, n_jobs otherwise."""
    if not on_gpu(device, cuda_devices) or n_jobs <= max(cuda_devices, 1):
        return n_jobs
    workers = max(cuda_devices, 1)
    log.info(
        "n_jobs=%d on %d GPU(s): %d worker(s), one per GPU (processes sharing a GPU take turns)",
        n_jobs,
        cuda_devices,
        workers,
    )
    return workers


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
