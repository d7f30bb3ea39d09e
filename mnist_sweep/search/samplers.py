"""The grid sampler, which the stock sweeper binds to the search space in its own
`sweep()`: this project's sweeper replaces that method, so it binds it here."""

from __future__ import annotations

import functools
import math
from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from optuna.distributions import BaseDistribution

from mnist_sweep.errors import ConfigError


class SweepGridSampler(optuna.samplers.GridSampler):
    """GridSampler without its `study.stop()` once the grid is used up.

    The sweep ends in one place, at n_trials (`MaxTrialsCallback` in the sweeper's
    `study.optimize`), which `bind_grid` caps at the grid's size; a `stop()` from the
    sampler would end this command's workers while other commands on a shared study go on.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def bind_grid(
    sampler: Any, distributions: dict[str, BaseDistribution], n_trials: int
) -> tuple[Any, int]:
    """A `hydra/sweeper/sampler=grid` partial made a GridSampler over the swept
    dimensions, with n_trials capped at the grid's size (as the stock sweeper
    does); any other sampler is returned as it is."""
    if not (isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler):
        return sampler, n_trials
    continuous = [
        name
        for name, dist in distributions.items()
        if isinstance(dist, optuna.distributions.FloatDistribution) and dist.step is None
    ]
    if continuous:
        raise ConfigError(
            f"the grid sampler needs a discrete search space, but {', '.join(continuous)} "
            "sweep an interval; give each a choice(...) or a fixed value on the command line"
        )
    grid = {
        name: OptunaSweeperImpl._to_grid_sampler_choices(dist)
        for name, dist in distributions.items()
    }
    grid_sampler = SweepGridSampler(grid, *sampler.args, **sampler.keywords)
    return grid_sampler, min(n_trials, math.prod(len(v) for v in grid.values()))
