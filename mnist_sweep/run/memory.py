"""Refusing a net too large for the memory it would train in, before it is allocated.

The net is first built on torch's meta device (shapes without storage), which
gives its parameter count for free. A net whose weights fit is then built for
real and one image is passed through it; every layer's output for a whole batch
is that image's times the batch size: the activations a training step keeps for
the backward pass. A net whose weights alone do not fit is measured on the meta
device instead, so that nothing is allocated whatever its size (meta kernels
cost seconds the first time they run, which only a refused net pays).

A net whose estimate exceeds the device's whole memory cannot train; it is
refused with its size, instead of ending in the allocator's traceback. The
estimate is a floor, not a budget: a net below it may still run out of memory,
which the command then reports as one line too (errors.out_of_memory).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from mnist_sweep.errors import ArchitectureError
from mnist_sweep.run.model import count_params, pass_one_image

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


def activations_per_image(model: nn.Module) -> int:
    """Numbers every layer outputs for one image."""
    sizes: list[int] = []
    leaves = [m for m in model.modules() if not any(m.children())]
    pass_one_image(model, leaves, lambda _m, _i, out: sizes.append(out.numel()))
    return sum(sizes)


def _gb(size: int) -> str:
    return f"{size / 1e9:,.1f} GB" if size >= 1e8 else f"{size / 1e6:,.1f} MB"


def build_fitting(
    build: Callable[[], nn.Module], batch_size: int, device: torch.device
) -> nn.Module:
    """The net `build` makes, once it is known to fit the device's memory for training;
    ArchitectureError, naming its size, if it cannot."""
    have = device_memory(device)
    with torch.device("meta"):
        skeleton = build()  # building on meta draws no random numbers
    params = count_params(skeleton)
    weights_fit = FLOAT * PARAM_COPIES * params <= have
    model = build() if weights_fit else skeleton  # a skeleton is measured, never trained
    activations = batch_size * activations_per_image(model)
    need = FLOAT * (PARAM_COPIES * params + ACTIVATION_COPIES * activations)
    if need > have:  # always, when the weights alone do not fit
        where = "this machine" if device.type == "cpu" else str(device)
        raise ArchitectureError(
            f"model: {params:,} params ({_gb(FLOAT * params)}) and {_gb(FLOAT * activations)} "
            f"of activations per batch of {batch_size} need at least {_gb(need)} to train, "
            f"more than {where}'s {_gb(have)} of memory; lower the model's widths or "
            "data.batch_size"
        )
    return model
