"""Every key a user can type, with its type and allowed range, stated once per config group.

`validate(cfg)` checks the composed config before anything is loaded or built
and raises ConfigError with one line naming the key, its value and what is
allowed. What needs more than the config (the feature map followed through the
net, a CUDA device being there, the data files) is checked where it is computed.

Modules by group: data (data), model (model, dropout), optim (optimizer,
scheduler), trainer (trainer, average, distill), logger (logger); the top-level keys are below.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import Field, ValidationError

from mnist_sweep.errors import ConfigError, first_line
from mnist_sweep.schema.base import Section
from mnist_sweep.schema.data import Data
from mnist_sweep.schema.logger import Logger, NoLogger
from mnist_sweep.schema.messages import one_line
from mnist_sweep.schema.model import Dropout, Model
from mnist_sweep.schema.optim import Optimizer, Scheduler
from mnist_sweep.schema.trainer import Average, Distill, Trainer

__all__ = ["Config", "validate"]


class Config(Section):
    """The composed config a run trains from (`hydra` aside)."""

    data: Data
    model: Model
    dropout: Dropout
    optimizer: Optimizer
    scheduler: Scheduler
    average: Average
    distill: Distill
    trainer: Trainer
    # Run folders from before the group existed have no `logger` in their config.
    logger: Logger = NoLogger(kind="none")
    target_acc: Annotated[float, Field(gt=0, le=100)]  # percent
    # The figure the task returns to a sweeper that maximises one number (the stock
    # hydra/sweeper=optuna, or objective=accuracy); null: the task returns its figures.
    optimized_metric: Literal["test_acc", "val_acc", "best_test_acc"] | None = None


def _resolved(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    try:
        values = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:  # an interpolation that does not resolve
        where = f"{e.full_key}: " if getattr(e, "full_key", None) else ""
        raise ConfigError(f"{where}{first_line(e)}") from None
    assert isinstance(values, dict)
    return values


def validate(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Check the composed config against the schema; ConfigError names the first bad key."""
    values = _resolved(cfg)
    values.pop("hydra", None)  # Hydra's own settings, present when composed with them
    try:
        Config.model_validate(values)
    except ValidationError as e:
        raise ConfigError(one_line(e, Config)) from None
