"""The sweeper's own settings (`hydra.sweeper.*`): checked when the sweep starts, before
any study is opened or trial launched. The search space (`params`) is checked against
the run schema by mnist_sweep/search/space.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from mnist_sweep.errors import ConfigError
from mnist_sweep.schema.base import Count, NonNegativeInt, Section, Share
from mnist_sweep.schema.messages import one_line


class Promote(Section):
    study: str | None
    top: Count


class Sweeper(Section):
    storage: str | None
    study_name: str | None
    n_trials: Count
    n_jobs: Count
    max_failure_rate: Share
    confirm_seeds: NonNegativeInt
    heartbeat_interval: Count  # seconds
    grace_period: Count  # seconds
    retry_failed: NonNegativeInt
    enqueue: list[dict[str, Any]]
    promote: Promote | None


class _Hydra(Section):
    sweeper: Sweeper


class SweeperSettings(Section):
    """Rooted at `hydra`, so that an error names the key as users type it."""

    hydra: _Hydra


def validate_sweeper(settings: Mapping[str, Any]) -> None:
    """Check the sweeper's settings; ConfigError names the first bad `hydra.sweeper.*` key."""
    try:
        SweeperSettings.model_validate({"hydra": {"sweeper": dict(settings)}})
    except ValidationError as e:
        raise ConfigError(one_line(e, SweeperSettings)) from None
