"""What every config section shares: strict types, no undeclared key, and the ranges keys use."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError


class Section(BaseModel):
    """A config group, or a mapping inside one.

    Strict: a value must already have its type. The trainer reads the config, not
    this model, so a "0.1" that the schema accepted as 0.1 would still reach torch
    as a string. Forbidding undeclared keys catches a `+optimizer.lrr=0.1` typo.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
OpenFraction = Annotated[float, Field(gt=0, lt=1)]
Share = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


ABSENT = object()


def conflict(key: str, message: str, value: Any = ABSENT) -> PydanticCustomError:
    """A rule across keys, reported against `key` (and its value, unless absent) of the
    section that raises it; `message` ends with what to do about it."""
    context = {"key": key} if value is ABSENT else {"key": key, "value": value}
    return PydanticCustomError("conflict", message, context)
