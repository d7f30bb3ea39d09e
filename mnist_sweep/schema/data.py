"""The `data` group: where MNIST is, how it is batched and split, and its augmentation."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from mnist_sweep.schema.base import (
    Count,
    Fraction,
    NonNegative,
    Positive,
    Section,
    Share,
    conflict,
)

# MNIST's training set: what data.train_subset and data.val_size cut from.
TRAIN_IMAGES = 60_000

Images = Annotated[int, Field(ge=1, le=TRAIN_IMAGES)]


class Augment(Section):
    strength: NonNegative  # scales every range below; 0 switches augmentation off
    degrees: Annotated[float, Field(ge=0, le=180)]
    translate: Share
    scale: Fraction
    brightness: Share
    contrast: Share
    elastic: NonNegative = 0.0  # Simard et al.'s alpha, pixels (0: no elastic distortion)
    elastic_sigma: Positive = 4.0  # the displacement field's smoothing, pixels
    p: Share

    @model_validator(mode="after")
    def _zoom_stays_positive(self) -> Augment:
        if self.scale * self.strength >= 1:
            raise conflict(
                "scale",
                f"times data.augment.strength={self.strength} reaches 1, so a zoom of 0 "
                "could be drawn; lower either",
                self.scale,
            )
        return self


class Data(Section):
    root: Annotated[str, Field(min_length=1)]
    download: bool
    verify: bool
    batch_size: Images
    eval_batch_size: Count | None  # null: chosen by device
    train_subset: Images | None  # null: all of them
    val_size: Annotated[int, Field(ge=0, lt=TRAIN_IMAGES)]
    mean: float
    std: Positive
    augment: Augment

    @model_validator(mode="after")
    def _a_batch_is_left_to_train_on(self) -> Data:
        images = self.train_subset or TRAIN_IMAGES
        left = images - self.val_size
        if left >= self.batch_size:
            return self
        batch = f"one batch (data.batch_size={self.batch_size})"
        if self.val_size:
            raise conflict(
                "val_size",
                f"leaves {max(left, 0):,} of {images:,} training images, less than {batch}; "
                "lower data.val_size or data.batch_size",
                self.val_size,
            )
        raise conflict(
            "train_subset",
            f"is less than {batch}; raise it or lower data.batch_size",
            self.train_subset,
        )
