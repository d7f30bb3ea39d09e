"""The parametric CNN family every preset (and every sweep trial) is built from.

A net is a list of blocks. Each block is a run of 3x3 conv units
(conv -> BatchNorm -> activation, ReLU unless `model.activation` says otherwise),
optionally followed by a 2x2 max-pool and a 1x1
"transition" conv that narrows the channels. In a separable block each 3x3 conv
is depthwise (one 3x3 filter per input channel) followed by a 1x1 conv to the
block's width, as in MobileNet and Xception: 9c + c^2 weights instead of 9c^2 for
c channels in and out, so the same budget buys wider maps. There is no
BatchNorm or ReLU between the two halves (Xception found none works best).
Dropout goes after every conv unit (placement "unit") or once after every block
but the last ("block"). A head turns the last feature map into class logits:
global average pooling (plus a linear layer when the last width is not the class
count) or flatten + fully connected layers.

The model returns logits; the loss applies the (single) log-softmax.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mnist_sweep.errors import ArchitectureError

IMAGE_SIZE = 28
IN_CHANNELS = 1
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "gelu": nn.GELU,
    "hardswish": lambda: nn.Hardswish(inplace=True),
}


@dataclass(frozen=True)
class BlockSpec:
    widths: tuple[int, ...]
    paddings: tuple[int, ...]
    pool: bool
    transition: int | None
    separable: bool = False


def parse_blocks(model_cfg: Mapping[str, Any]) -> list[BlockSpec]:
    """Read `model.blocks` (checked against mnist_sweep/schema/model.py) into specs."""
    specs = []
    for block in model_cfg["blocks"]:
        if block.get("widths") is not None:
            widths = tuple(block["widths"])
        else:
            widths = (block["width"],) * block.get("convs", 1)
        padding = block.get("padding", 1)
        paddings = tuple(padding) if isinstance(padding, Sequence) else (padding,) * len(widths)
        transition = block.get("transition")
        if transition == 0:  # width 0: no transition, as null (sweep choices cannot hold null)
            transition = None
        specs.append(
            BlockSpec(
                widths,
                paddings,
                bool(block.get("pool", False)),
                transition,
                bool(block.get("separable", False)),
            )
        )
    return specs


def _check_feature_maps(specs: list[BlockSpec]) -> int:
    """Follow the spatial size through the net; name the first layer it collapses at."""
    size = IMAGE_SIZE
    for i, spec in enumerate(specs, start=1):
        for j, pad in enumerate(spec.paddings, start=1):
            size = size + 2 * pad - 2
            if size < 1:
                raise ArchitectureError(
                    f"model block {i} conv {j}: the feature map collapses to nothing "
                    "(too many unpadded convs or pools for a 28x28 image); "
                    "use padding: 1, fewer convs or fewer pools"
                )
        if spec.pool:
            if size < 2:
                raise ArchitectureError(
                    f"model block {i}: cannot max-pool a {size}x{size} feature map; "
                    "remove this pool or an earlier one"
                )
            size //= 2
    return size


class Dropout(nn.Dropout):
    """nn.Dropout with a cheaper mask on the CPU; the same layer everywhere else.

    torch draws a CPU dropout mask with bernoulli_, one Mersenne-Twister call per
    activation: for nets this small the draw is the largest single cost of a CPU
    training step (docs/BENCHMARKS.md). Here one 64-bit draw gives four 16-bit uniforms, and an
    activation is kept when its uniform clears a threshold. The drop rate is p
    rounded to a multiple of 1/65536 (0.1 becomes 0.1000061), and survivors are
    scaled by 1 / (1 - that rate), so the layer stays unbiased (in bf16, up to
    the rounding of that scale, as in torch's own dropout). CUDA keeps torch's
    fused kernel, and so does a p too close to 1 for the 16-bit grid.
    """

    LEVELS = 1 << 16  # one 16-bit uniform per activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped = round(self.p * self.LEVELS)
        if not self.training or self.inplace or not 0 < dropped < self.LEVELS or not _cpu_dense(x):
            return super().forward(x)
        # random_ over the whole int64 range: each 16-bit lane is uniform too.
        bits = torch.empty((x.numel() + 3) // 4, dtype=torch.int64)
        bits.random_(-(1 << 63), (1 << 63) - 1)
        # The lanes laid out like x (NCHW or channels_last), so the mask is read
        # in x's own order; a signed lane is kept when it is at or above this.
        lanes = bits.view(torch.int16)[: x.numel()].as_strided(x.shape, x.stride())
        keep = lanes >= dropped - self.LEVELS // 2
        # In x's dtype, like torch's own dropout (bf16 under autocast).
        return x * keep.to(x.dtype).mul_(self.LEVELS / (self.LEVELS - dropped))


def _cpu_dense(x: torch.Tensor) -> bool:
    """A CPU float tensor whose elements fill its storage in some layout."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
    )


def build_model(
    model_cfg: Mapping[str, Any], dropout: float = 0.0, placement: str = "unit"
) -> nn.Sequential:
    """Build the net described by the `model` config group; raises ArchitectureError early
    when its feature map does not survive the blocks.

    `dropout` and `placement` come from the `dropout` group (p, placement). The
    values' types and ranges are the schema's to check (mnist_sweep/schema/).
    """
    specs = parse_blocks(model_cfg)
    final_size = _check_feature_maps(specs)
    num_classes = model_cfg.get("num_classes", 10)
    batchnorm = bool(model_cfg.get("batchnorm", True))
    affine = bool(model_cfg.get("bn_affine", True))
    activation = ACTIVATIONS[str(model_cfg.get("activation", "relu"))]
    bias = bool(model_cfg.get("conv_bias", not batchnorm))

    layers: list[nn.Module] = []
    channels = IN_CHANNELS
    for i, spec in enumerate(specs, start=1):
        for width, pad in zip(spec.widths, spec.paddings, strict=True):
            if spec.separable:
                layers += [
                    nn.Conv2d(channels, channels, 3, padding=pad, groups=channels, bias=False),
                    nn.Conv2d(channels, width, 1, bias=bias),
                ]
            else:
                layers.append(nn.Conv2d(channels, width, 3, padding=pad, bias=bias))
            if batchnorm:
                layers.append(nn.BatchNorm2d(width, affine=affine))
            layers.append(activation())
            if dropout > 0 and placement == "unit":
                layers.append(Dropout(dropout))
            channels = width
        if spec.pool:
            layers.append(nn.MaxPool2d(2))
        if spec.transition is not None:
            layers.append(nn.Conv2d(channels, spec.transition, 1, bias=bias))
            channels = spec.transition
        if dropout > 0 and placement == "block" and i < len(specs):
            layers.append(Dropout(dropout))

    if model_cfg.get("head", "gap") == "gap":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if channels != num_classes:
            layers.append(nn.Linear(channels, num_classes))
    else:  # fc
        layers.append(nn.Flatten())
        features = channels * final_size * final_size
        for hidden in model_cfg.get("fc_hidden") or []:
            layers += [nn.Linear(features, hidden), activation()]
            features = hidden
        layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


def count_params(model: nn.Module) -> int:
    """Trainable parameters: the number the whole project minimises."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pass_one_image(
    model: nn.Module,
    modules: Iterable[nn.Module] = (),
    hook: Callable[[nn.Module, tuple[Tensor, ...], Tensor], None] | None = None,
) -> None:
    """Pass one blank 28x28 image through the model (on its own device, in its own
    dtype), calling `hook(module, inputs, output)` as each of `modules` runs. Its state
    is left untouched: evaluation mode (which draws no random numbers), no gradient, its
    training mode restored."""
    hooks = [m.register_forward_hook(hook) for m in modules] if hook else []
    was_training = model.training
    weight = next(model.parameters())
    try:
        model.eval()
        with torch.no_grad():
            image = torch.zeros(1, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE, dtype=weight.dtype)
            model(image.to(weight.device))
    finally:
        model.train(was_training)
        for handle in hooks:
            handle.remove()


def layer_output_shapes(model: nn.Sequential) -> list[tuple[str, tuple[int, ...]]]:
    """(layer type, output shape) of every layer for one 28x28 image."""
    shapes: list[tuple[str, tuple[int, ...]]] = []

    def seen(layer: nn.Module, _inputs: tuple[Tensor, ...], out: Tensor) -> None:
        shapes.append((type(layer).__name__, tuple(out.shape[1:])))

    pass_one_image(model, list(model), seen)
    return shapes
