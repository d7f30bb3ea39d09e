"""What a net costs to run: parameters, multiply-accumulates and activations per image.

A small device is judged by flash (the weights), RAM (the activations) and
compute (the MACs), not by the parameter count alone.
"""

from __future__ import annotations

import math

from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mnist_sweep.run.model import (
    IMAGE_SIZE,
    IN_CHANNELS,
    count_params,
    layer_output_shapes,
    pass_one_image,
)

__all__ = ["count_params", "largest_activation", "macs"]


def macs(model: nn.Module) -> int:
    """Multiply-accumulates for one 28x28 image, in the convolutions and linear layers.

    torch's FlopCounterMode counts 2 FLOPs per multiply-accumulate of those
    layers; BatchNorm (folded into the convolutions on export), ReLU, pooling
    and the biases' additions are left out, as is usual for MACs.
    """
    counter = FlopCounterMode(display=False)
    with counter:
        pass_one_image(model)
    return counter.get_total_flops() // 2


def largest_activation(model: nn.Sequential) -> int:
    """The most values one layer reads and writes together for one image (its input plus
    its output): the working memory of a runtime that keeps two buffers, in elements."""
    sizes = [IN_CHANNELS * IMAGE_SIZE * IMAGE_SIZE]
    sizes += [math.prod(shape) for _, shape in layer_output_shapes(model)]
    return max(a + b for a, b in zip(sizes, sizes[1:], strict=False))
