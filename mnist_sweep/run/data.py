"""MNIST as whole tensors on the training device, with whole-batch augmentation.

torchvision reads the files; after that there is no per-sample Python: batches
are index slices of one tensor and augmentation is one affine warp per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mnist_sweep.errors import DataError
from mnist_sweep.run.mnist_files import ROOT_HINT, check_mnist


def load_mnist(
    root: str | Path, download: bool = False, verify: bool = True
) -> dict[str, tuple[Tensor, Tensor]]:
    """Read MNIST through torchvision: {"train": (uint8 images, labels), "test": ...}."""
    # Imported here: torchvision's import is slow (it pulls in torch._dynamo), and a
    # process that never loads data (a sweep's parent, a config error) need not pay it.
    from torchvision.datasets import MNIST

    root = Path(root).expanduser().resolve()
    raw = root / "MNIST" / "raw"
    missing = check_mnist(root, download, verify)
    splits = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = MNIST(str(root), train=train, download=download)
        except Exception as e:  # network errors differ by platform; all mean the same to the user
            raise DataError(f"could not download MNIST into {root} ({e}); {ROOT_HINT}") from e
        splits[split] = (ds.data, ds.targets)
    if missing:  # just downloaded
        check_mnist(root, False, verify)
    for split, (_, labels) in splits.items():
        if labels.min() < 0 or labels.max() > 9:
            raise DataError(
                f"MNIST {split} labels under {raw} are outside 0-9: the label file is corrupt"
            )
    return splits


@dataclass
class DeviceData:
    """Normalised float images and labels, already on the training device."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    val_x: Tensor | None
    val_y: Tensor | None
    background: float  # value of a black pixel after normalisation

    @property
    def n_train(self) -> int:
        return self.train_x.shape[0]


def normalise(
    images: Tensor, mean: float, std: float, device: torch.device | str = "cpu"
) -> Tensor:
    """uint8 images (N, 28, 28) as the net reads them: float (N, 1, 28, 28) on `device`,
    scaled to [0, 1], then normalised with the data config's mean and std."""
    x = images.to(device=device, dtype=torch.float32).div_(255).unsqueeze(1)
    return x.sub_(mean).div_(std)


def prepare_data(data_cfg: Any, device: torch.device) -> DeviceData:
    """Load, subset, split off validation and normalise, per the `data` config group."""
    splits = load_mnist(data_cfg.root, data_cfg.download, data_cfg.get("verify", True))
    train_x, train_y = splits["train"]
    test_x, test_y = splits["test"]
    subset = data_cfg.train_subset
    if subset is not None:
        train_x, train_y = train_x[:subset], train_y[:subset]
    val_size = data_cfg.val_size
    val_x = val_y = None
    if val_size:
        # The last images, so the split does not depend on the seed.
        train_x, val_x = train_x[:-val_size], train_x[-val_size:]
        train_y, val_y = train_y[:-val_size], train_y[-val_size:]

    def to_device(images: Tensor) -> Tensor:
        return normalise(images, data_cfg.mean, data_cfg.std, device)

    return DeviceData(
        train_x=to_device(train_x),
        train_y=train_y.to(device),
        test_x=to_device(test_x),
        test_y=test_y.to(device),
        val_x=None if val_x is None else to_device(val_x),
        val_y=None if val_y is None else val_y.to(device),
        background=(0.0 - data_cfg.mean) / data_cfg.std,
    )


def random_affine(
    x: Tensor,
    degrees: float,
    translate: float,
    scale: float,
    background: float,
    generator: torch.Generator | None = None,
    elastic: float = 0.0,
    elastic_sigma: float = 4.0,
) -> Tensor:
    """Rotate, shift and zoom every image of a batch by its own random amount, and with
    `elastic` > 0 distort it elastically as well, all in one warp."""
    n = x.shape[0]

    def uniform(half_width: float) -> Tensor:
        u = torch.rand(n, device=x.device, generator=generator)
        return (u * 2 - 1) * half_width

    angle = uniform(math.radians(degrees))
    zoom = 1 + uniform(scale)
    # affine_grid maps output to input coordinates in [-1, 1], so a shift of a
    # fraction f of the image is 2f there, and zooming in means sampling 1/zoom.
    tx, ty = uniform(2 * translate), uniform(2 * translate)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], dim=1), torch.stack([sin, cos, ty], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if elastic > 0:
        grid = grid + elastic_displacement(x, elastic, elastic_sigma, generator)
    # Warp with black (not zero, which is grey after normalisation) outside the image.
    warped = F.grid_sample(
        x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return warped + background


def elastic_displacement(
    x: Tensor, alpha: float, sigma: float, generator: torch.Generator | None = None
) -> Tensor:
    """Simard et al. (2003)'s elastic distortion as a grid offset for grid_sample: per
    image, a field of uniform(-1, 1) pixel displacements smoothed by a Gaussian of
    `sigma` pixels and scaled by `alpha` pixels; shape (n, h, w, 2), in grid units."""
    n, _, h, w = x.shape
    noise = torch.rand(n, 2, h, w, device=x.device, generator=generator) * 2 - 1
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    # Separable smoothing, each displacement channel on its own.
    field = F.conv2d(
        noise.to(x.dtype),
        kernel.view(1, 1, -1, 1).expand(2, 1, -1, 1),
        padding=(radius, 0),
        groups=2,
    )
    field = F.conv2d(
        field, kernel.view(1, 1, 1, -1).expand(2, 1, 1, -1), padding=(0, radius), groups=2
    )
    # Pixels to grid units: the grid spans 2 over the image's side. Filled, not copied
    # from a host list: a CUDA graph (stack/graph.py) cannot capture a host copy.
    scale = torch.full((2,), 2 / w, device=x.device, dtype=x.dtype)
    scale[1:].fill_(2 / h)
    return field.permute(0, 2, 3, 1) * alpha * scale


def augmentation(aug_cfg: Any, mean: float, std: float) -> dict[str, float] | None:
    """The `data.augment` keys with `strength` applied, read once per epoch; None when off."""
    strength = aug_cfg.strength
    ranges = {
        key: float(aug_cfg.get(key, 0.0)) * strength
        for key in ("degrees", "translate", "scale", "brightness", "contrast", "elastic")
    }
    if strength <= 0 or not any(ranges.values()):
        return None
    sigma = float(aug_cfg.get("elastic_sigma", 4.0))
    return {
        **ranges,
        "elastic_sigma": sigma,
        "p": float(aug_cfg.get("p", 1.0)),
        "mean": mean,
        "std": std,
    }


def augment_batch(
    x: Tensor,
    background: float,
    generator: torch.Generator | None,
    *,
    degrees: float,
    translate: float,
    scale: float,
    brightness: float,
    contrast: float,
    p: float,
    mean: float,
    std: float,
    elastic: float = 0.0,
    elastic_sigma: float = 4.0,
) -> Tensor:
    """Augment a normalised batch: warp, then brightness/contrast; each image with chance p."""
    out = x
    if degrees or translate or scale or elastic:
        out = random_affine(
            out, degrees, translate, scale, background, generator, elastic, elastic_sigma
        )
    if brightness or contrast:
        out = random_brightness_contrast(out, brightness, contrast, mean, std, generator)
    if p < 1:
        keep = torch.rand(x.shape[0], device=x.device, generator=generator) < p
        out = torch.where(keep.view(-1, 1, 1, 1), out, x)
    return out


def random_brightness_contrast(
    x: Tensor,
    brightness: float,
    contrast: float,
    mean: float,
    std: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per image, pixel v in [0, 1] becomes clamp(v * (1 + c) + b, 0, 1), b and c uniform.

    Works on normalised images: it undoes the normalisation, changes the pixels
    and normalises again, so black stays black only where b is 0.
    """
    n = x.shape[0]

    def uniform(half_width: float) -> Tensor:
        u = torch.rand(n, 1, 1, 1, device=x.device, generator=generator)
        return (u * 2 - 1) * half_width

    gain, shift = 1 + uniform(contrast), uniform(brightness)
    pixels = (x * std + mean) * gain + shift
    return (pixels.clamp_(0, 1) - mean) / std
