"""Each copy's dropout masks, drawn as its solo run would draw them.

A solo run draws every dropout mask from torch's global generator, layer after
layer, step after step (run/model.py's Dropout on a CPU, torch's own dropout
elsewhere). A stacked run gives each copy a generator holding the global state
its solo run would have after building (the seed, the net's and the teacher's
initialisation), and draws the same numbers of the same kind, laid out in the
memory order the solo run's activation has: so on a CPU every copy's masks are
its solo run's masks, bit for bit. On CUDA torch's fused dropout kernel cannot
be given a generator; there each copy draws its own Bernoulli masks, of the
same distribution but not the solo run's numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mnist_sweep.run.model import Dropout, pass_one_image


@dataclass(frozen=True)
class DropoutLayer:
    p: float
    shape: tuple[int, ...]  # one image's activation at the layer
    project: bool  # the project's Dropout (its CPU mask), not torch's nn.Dropout


def plan(model: nn.Module) -> list[DropoutLayer]:
    """The net's dropout layers in call order, with the activation shape each one sees
    (found by passing one blank image through it, which leaves the random state as it
    is)."""
    layers: list[DropoutLayer] = []

    def seen(m: nn.Module, inputs: tuple[Tensor, ...], _out: Tensor) -> None:
        layers.append(DropoutLayer(float(m.p), tuple(inputs[0].shape[1:]), isinstance(m, Dropout)))

    pass_one_image(model, [m for m in model.modules() if isinstance(m, nn.Dropout)], seen)
    return layers


def _strides(shape: tuple[int, ...], channels_last: bool) -> tuple[int, ...]:
    """The strides the solo run's activation has: NHWC for a 4-D activation of a
    channels_last net (every conv, BatchNorm and pool keeps that layout), else dense."""
    if channels_last and len(shape) == 4:
        n, c, h, w = shape
        return (h * w * c, 1, w * c, c)
    return torch.empty(shape, device="meta").stride()


def solo_mask(
    layer: DropoutLayer,
    batch: int,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    channels_last: bool,
) -> Tensor:
    """The scaled keep-mask (0 or 1/(1-p)) the solo run's layer draws for a batch."""
    shape = (batch, *layer.shape)
    strides = _strides(shape, channels_last)
    numel = batch * int(torch.Size(layer.shape).numel())
    dropped = round(layer.p * Dropout.LEVELS)
    fast = (
        layer.project
        and device.type == "cpu"
        and dtype in (torch.float32, torch.bfloat16)
        and 0 < dropped < Dropout.LEVELS
    )
    if fast:  # run/model.py's Dropout.forward, with the copy's generator
        bits = torch.empty((numel + 3) // 4, dtype=torch.int64)
        bits.random_(-(1 << 63), (1 << 63) - 1, generator=generator)
        lanes = bits.view(torch.int16)[:numel].as_strided(shape, strides)
        keep = lanes >= dropped - Dropout.LEVELS // 2
        return keep.to(dtype).mul_(Dropout.LEVELS / (Dropout.LEVELS - dropped))
    # torch's dropout: a Bernoulli noise tensor laid out like the input.
    noise = torch.empty_strided(shape, strides, dtype=dtype, device=device)
    return noise.bernoulli_(1 - layer.p, generator=generator).div_(1 - layer.p)


def draw(
    layers: Sequence[DropoutLayer],
    batch: int,
    generators: Sequence[torch.Generator],
    dtype: torch.dtype,
    device: torch.device,
    channels_last: bool,
) -> list[Tensor]:
    """One step's masks, per layer stacked over the copies (K, batch, ...); each copy
    draws its layers in call order, as its solo run does."""
    per_copy = [
        [solo_mask(layer, batch, g, dtype, device, channels_last) for layer in layers]
        for g in generators
    ]
    return [torch.stack([masks[i] for masks in per_copy]) for i in range(len(layers))]
