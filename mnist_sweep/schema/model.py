"""The `model` group (the net's blocks and head) and the `dropout` group that goes into it.

Only per-key ranges and rules between keys live here; whether the feature map
survives the blocks' convs and pools is followed layer by layer where the net
is built (mnist_sweep/run/model.py).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from mnist_sweep.schema.base import Count, Fraction, NonNegativeInt, Section, conflict

Padding = Literal[0, 1]  # 0: a 3x3 conv shrinks the map by 2; 1: keeps its size


class Block(Section):
    """One entry of model.blocks: `widths` (one per conv), or `width` repeated `convs` times."""

    widths: Annotated[list[Count], Field(min_length=1)] | None = None
    width: Count | None = None
    convs: Count = 1
    padding: Any = 1  # Padding, or a list of them, one per conv
    pool: bool = False
    transition: NonNegativeInt | None = None  # 1x1 conv width; 0 or null: none
    separable: bool = False  # each 3x3 conv depthwise, then 1x1 to the width

    @field_validator("padding")
    @classmethod
    def _padding(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        if not values or any(isinstance(v, bool) or v not in (0, 1) for v in values):
            raise PydanticCustomError("padding", "must be 0, 1 or a list of those, one per conv")
        return value

    @model_validator(mode="after")
    def _widths_given_once(self) -> Block:
        if self.widths is not None and {"width", "convs"} & self.model_fields_set:
            raise conflict(
                "widths", "given beside width/convs; keep one of the two forms", self.widths
            )
        if self.widths is None and self.width is None:
            raise conflict("width", "missing: give width (and convs) or widths")
        convs = len(self.widths) if self.widths is not None else self.convs
        if isinstance(self.padding, list) and len(self.padding) != convs:
            raise conflict(
                "padding", f"needs one entry per conv, {convs} here; or one 0 or 1", self.padding
            )
        return self


# The three_blocks template's scalar knobs, which its blocks read by interpolation.
# Presets written as explicit blocks (era_s5, era_s6) have none of them.
SET_IF_PRESENT = tuple(f"{k}{i}" for k in ("w", "n", "pad", "pool", "sep") for i in (1, 2, 3))


class Model(Section):
    name: Annotated[str, Field(min_length=1)]
    batchnorm: bool
    # false: BatchNorm normalises only; its per-channel scale and shift (2 params per
    # channel) are left out, so the count shrinks by 2x the conv widths.
    bn_affine: bool = True
    activation: Literal["relu", "leaky_relu", "silu", "gelu", "hardswish"] = "relu"
    conv_bias: bool
    head: Literal["gap", "fc"]
    fc_hidden: list[Count]  # widths of the hidden layers of the fc head
    num_classes: Annotated[int, Field(ge=10)]  # MNIST's ten digits; more are unused logits
    # Before `blocks`, so that a bad knob is named rather than the block it feeds.
    w1: Count | None = None
    w2: Count | None = None
    w3: Count | None = None
    n1: Count | None = None
    n2: Count | None = None
    n3: Count | None = None
    pad1: Padding | None = None
    pad2: Padding | None = None
    pad3: Padding | None = None
    pool1: bool | None = None
    pool2: bool | None = None
    pool3: bool | None = None
    sep1: bool | None = None
    sep2: bool | None = None
    sep3: bool | None = None
    t1: NonNegativeInt | None = None  # 0 or null: no transition
    t2: NonNegativeInt | None = None
    t3: NonNegativeInt | None = None
    blocks: Annotated[list[Block], Field(min_length=1)]

    @field_validator(*SET_IF_PRESENT, mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # The fields are optional (absent in explicit-block presets), not nullable.
        if value is None:
            raise PydanticCustomError("not_null", "must be set (only t1..t3 take null)")
        return value

    @model_validator(mode="after")
    def _hidden_layers_need_the_fc_head(self) -> Model:
        if self.fc_hidden and self.head != "fc":
            raise conflict(
                "fc_hidden",
                f"is only read by model.head=fc (here {self.head}); set model.fc_hidden=[]",
                self.fc_hidden,
            )
        return self


class Dropout(Section):
    p: Fraction
    placement: Literal["unit", "block"]  # after every conv unit; once after every block but last
