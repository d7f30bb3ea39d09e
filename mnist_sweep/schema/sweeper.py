"""The sweeper's own settings (`hydra.sweeper.*`), declared once: their types and ranges
here, their defaults in conf/hydra/sweeper/mnist_optuna.yaml. Checked when the sweep
starts, before any study is opened or trial launched. The search space (`params`) is
checked against the run schema by mnist_sweep/search/space.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Literal

from pydantic import ValidationError

from mnist_sweep.errors import ConfigError
from mnist_sweep.schema.base import Count, NonNegative, NonNegativeInt, Positive, Section, Share
from mnist_sweep.schema.messages import one_line


class Goal(str, Enum):
    """What a sweep looks for."""

    SMALLEST = "smallest"  # fewest params whose accuracy holds the target (a constraint)
    ACCURACY = "accuracy"  # the most accurate recipe (optimized_metric), with pruning
    PARETO = "pareto"  # the (params, accuracy) front, two objectives

    @property
    def directions(self) -> list[str]:
        """The study's directions: the one place a goal becomes Optuna's objectives."""
        return _DIRECTIONS[self]

    @classmethod
    def of(cls, directions: Sequence[Any]) -> Goal:
        """What a study was looking for, from its directions (Optuna's StudyDirection)."""
        names = [getattr(d, "name", str(d)).lower() for d in directions]
        return next((g for g in cls if g.directions == names), cls.SMALLEST)


_DIRECTIONS = {
    Goal.SMALLEST: ["minimize"],  # the parameter count, under the accuracy constraint
    Goal.ACCURACY: ["maximize"],
    Goal.PARETO: ["minimize", "maximize"],
}


class Promote(Section):
    study: str | None
    top: Count


class Sweeper(Section):
    storage: str | None
    study_name: str | None
    n_trials: Count
    n_jobs: Count
    max_failure_rate: Share
    objective: Literal["smallest", "accuracy", "pareto"]
    seeds: Count  # seeds a design may be trained on before its verdict
    seed_margin: NonNegative  # points below the target at which a design stops earning seeds
    # A trial's seeds as one stacked job (search/stacking.py); null: on a GPU only.
    stack_seeds: bool | None = None
    timeout: Positive | None  # seconds after which no new trial starts
    confirm_seeds: NonNegativeInt
    heartbeat_interval: Count  # seconds
    grace_period: Count  # seconds
    retry_failed: NonNegativeInt
    enqueue: list[dict[str, Any]]
    promote: Promote | None

    @property
    def goal(self) -> Goal:
        return Goal(self.objective)


class _Hydra(Section):
    sweeper: Sweeper


class SweeperSettings(Section):
    """Rooted at `hydra`, so that an error names the key as users type it."""

    hydra: _Hydra


def validate_sweeper(settings: Mapping[str, Any]) -> Sweeper:
    """The sweeper's settings, typed; ConfigError names the first bad `hydra.sweeper.*` key."""
    try:
        checked = SweeperSettings.model_validate({"hydra": {"sweeper": dict(settings)}})
    except ValidationError as e:
        raise ConfigError(one_line(e, SweeperSettings)) from None
    return checked.hydra.sweeper
