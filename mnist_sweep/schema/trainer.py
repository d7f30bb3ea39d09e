"""The `trainer` group (how a run is executed), the `average` group (what it ships) and
the `distill` group (a teacher's output as a second target)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from mnist_sweep.schema.base import Count, Fraction, NonNegativeInt, OpenFraction, Section


class Trainer(Section):
    epochs: Count
    seed: NonNegativeInt
    # One stacked copy per seed (stack/train.py); null: the single run of `seed`.
    # Default: configs written before the key existed.
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] | None = None
    cuda_graph: bool = True  # stacked runs on CUDA only; CPU runs are always eager
    label_smoothing: Fraction
    # cuda:N: the sweep gives each worker its own GPU on a machine with several.
    device: str
    precision: Literal["32", "bf16"]
    progress: bool
    resume: bool
    channels_last: bool
    threads: Count | None  # null: torch's default

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise PydanticCustomError(
                "seeds", "a seed is given twice; each copy needs its own seed"
            )
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise PydanticCustomError("device", "must be one of auto, cpu, cuda, cuda:N")
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _unquoted_32(cls, value: Any) -> Any:
        # The command line reads trainer.precision=32 as a number.
        return "32" if type(value) is int and value == 32 else value


class NoAverage(Section):
    kind: Literal["none"]


class EMA(Section):
    kind: Literal["ema"]
    decay: OpenFraction  # per step


class SWA(Section):
    kind: Literal["swa"]
    start: Fraction  # share of the run's steps after which averaging begins


Average = Annotated[NoAverage | EMA | SWA, Field(discriminator="kind")]


class Distill(Section):
    teacher: Annotated[str, Field(min_length=1)] | None  # a finished run folder; null: none
    # 0: the labels alone, and the teacher is neither loaded nor run (a search can
    # then choose between distilling and not with one number).
    alpha: Annotated[float, Field(ge=0, le=1)]
    temperature: Annotated[float, Field(gt=0)]
