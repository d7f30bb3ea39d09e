"""The user's own digit images: a folder of 28x28 PNGs, read as MNIST's images are."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from mnist_sweep.errors import UserError
from mnist_sweep.run.model import IMAGE_SIZE


def read_images(folder: str | Path, invert: bool = False) -> tuple[list[Path], Tensor]:
    """Every PNG in `folder` (sorted by name) as grey levels 0-255, shape (N, 28, 28) uint8.

    MNIST's digits are light on a dark ground; `invert` takes dark-on-light
    drawings (ink on paper) to that.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"--images {folder}: no such folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not paths:
        raise UserError(f"--images {folder}: no .png files in it")
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                grey = image.convert("L")
        except (OSError, UnidentifiedImageError) as e:
            raise UserError(f"{path} is not a readable PNG ({e})") from None
        if grey.size != (IMAGE_SIZE, IMAGE_SIZE):
            width, height = grey.size
            raise UserError(
                f"{path} is {width}x{height} pixels; the net reads {IMAGE_SIZE}x{IMAGE_SIZE} "
                "images (MNIST's: the digit centred in a 20x20 box), so resize it first"
            )
        pixels = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8)
        images.append(pixels.view(IMAGE_SIZE, IMAGE_SIZE))
    batch = torch.stack(images)
    return paths, 255 - batch if invert else batch
