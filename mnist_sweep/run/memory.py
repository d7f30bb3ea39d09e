"""Refusing a net too large for the memory it would train in, before any of it is allocated.

The net is built on torch's meta device (shapes without storage) and one
training batch is passed through it there: that gives its parameter count and
the activations a training step keeps for the backward pass. A net whose
estimate exceeds the device's whole memory cannot train; it is refused with
its size, instead of ending in the allocator's traceback. The estimate is a
floor, not a budget: a net below it may still run out of memory, which the
command then reports as one line too (errors.out_of_memory).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from mnist_sweep.errors import ArchitectureError
from mnist_sweep.run.model import IMAGE_SIZE, IN_CHANNELS, count_params

FLOAT = 4  # bytes: parameters and activations are float32
# Per parameter: the weights, their gradient, and an optimizer's or average's state.
PARAM_COPIES = 3
# Per activation: the output each layer keeps for the backward pass, and its gradient.
ACTIVATION_COPIES = 2


def device_memory(device: torch.device) -> int:
    """The device's whole memory in bytes: the GPU's, or the machine's RAM."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def footprint(build: Callable[[], nn.Module], batch_size: int) -> tuple[int, int]:
    """(parameters, activations of one training batch) of the net `build` makes,
    counted on the meta device: nothing is allocated, whatever the size."""
    with torch.device("meta"):
        model = build()
        sizes: list[int] = []
        leaves = [m for m in model.modules() if not any(m.children())]
        hooks = [
            m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel())) for m in leaves
        ]
        model.train()
        model(torch.empty(batch_size, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE))
    for hook in hooks:
        hook.remove()
    return count_params(model), sum(sizes)


def _gb(size: int) -> str:
    return f"{size / 1e9:,.1f} GB" if size >= 1e8 else f"{size / 1e6:,.1f} MB"


def check_fits(build: Callable[[], nn.Module], batch_size: int, device: torch.device) -> None:
    """ArchitectureError, naming the net's size, if training it cannot fit in the device."""
    params, activations = footprint(build, batch_size)
    need = FLOAT * (PARAM_COPIES * params + ACTIVATION_COPIES * activations)
    have = device_memory(device)
    if need > have:
        where = "this machine" if device.type == "cpu" else str(device)
        raise ArchitectureError(
            f"model: {params:,} params ({_gb(FLOAT * params)}) and {_gb(FLOAT * activations)} "
            f"of activations per batch of {batch_size} need at least {_gb(need)} to train, "
            f"more than {where}'s {_gb(have)} of memory; lower the model's widths or "
            "data.batch_size"
        )
