"""The `optimizer` and `scheduler` groups: one model per `_target_` the project ships.

Both groups are Hydra partials that the trainer completes (the net's
parameters; the step counts), so `_partial_` must stay true. A key that the
group's YAML leaves out may still be added (`+optimizer.dampening=0.1`); its
default here is the callee's own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mnist_sweep.schema.base import (
    Count,
    Fraction,
    NonNegative,
    OpenFraction,
    Positive,
    Section,
    Share,
    conflict,
)

Partial = Annotated[Literal[True], Field(alias="_partial_")]


class SGD(Section):
    target: Literal["torch.optim.SGD"] = Field(alias="_target_")
    partial: Partial
    lr: Positive
    momentum: Fraction
    nesterov: bool
    weight_decay: NonNegative
    dampening: Fraction = 0.0

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGD:
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise conflict(
                "nesterov",
                "needs optimizer.momentum > 0 and optimizer.dampening=0; "
                "set optimizer.nesterov=false or change those",
                self.nesterov,
            )
        return self


class Adam(Section):
    target: Literal["torch.optim.Adam", "torch.optim.AdamW"] = Field(alias="_target_")
    partial: Partial
    lr: Positive
    weight_decay: NonNegative
    betas: Annotated[list[Fraction], Field(min_length=2, max_length=2)] = [0.9, 0.999]
    eps: Positive = 1e-8
    amsgrad: bool = False


Optimizer = Annotated[SGD | Adam, Field(discriminator="target")]


class OneCycle(Section):
    target: Literal["mnist_sweep.run.optim.onecycle"] = Field(alias="_target_")
    partial: Partial
    pct_start: OpenFraction  # share of the steps spent rising
    div_factor: Positive  # the lr starts at optimizer.lr / div_factor
    final_div_factor: Positive  # and ends that much lower again
    anneal_strategy: Literal["cos", "linear"]


class Step(Section):
    target: Literal["mnist_sweep.run.optim.step"] = Field(alias="_target_")
    partial: Partial
    every_epochs: Count
    gamma: Positive


class Cosine(Section):
    target: Literal["mnist_sweep.run.optim.cosine"] = Field(alias="_target_")
    partial: Partial
    min_lr_factor: Share


class Constant(Section):
    target: Literal["mnist_sweep.run.optim.constant"] = Field(alias="_target_")
    partial: Partial


Scheduler = Annotated[OneCycle | Step | Cosine | Constant, Field(discriminator="target")]
