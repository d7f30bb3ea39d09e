"""Where a study starts: `enqueue`'s points, then the best designs of an earlier study
(`promote`, the multi-fidelity step), queued once per study with Optuna's enqueue_trial."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mnist_sweep import plots
from mnist_sweep.errors import UserError
from mnist_sweep.schema.sweeper import Sweeper
from mnist_sweep.search.storage import display_url
from mnist_sweep.search.trial_result import TrialResult


def promoted(trials: Sequence[FrozenTrial], top: int, target: float) -> list[FrozenTrial]:
    """The designs of a screening study worth training in full, best first.

    Those that met the screen's `target`, fewest parameters first; then, while fewer
    than `top`, the rest of the (params, accuracy) Pareto front, most accurate
    first: the screen's target is a guess at what the short schedule can show.
    """
    acc = {t.number: _or(TrialResult.of(t).selection_acc, -1.0) for t in trials}
    met = [t for t in trials if acc[t.number] >= target]
    met.sort(key=lambda t: (t.value, -acc[t.number]))
    front = plots.pareto_front(trials, key=lambda t: (t.value, acc[t.number]))
    rest = sorted((t for t in front if t not in met), key=lambda t: -acc[t.number])
    unique: dict[str, FrozenTrial] = {}
    for t in met + rest:  # the same design tried twice is promoted once
        unique.setdefault(json.dumps(t.params, sort_keys=True, default=str), t)
    return list(unique.values())[:top]


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _points(study: optuna.Study, settings: Sweeper) -> list[dict[str, Any]]:
    points = [dict(p) for p in settings.enqueue]
    promote = settings.promote
    if promote and promote.study:
        try:
            earlier = optuna.load_study(study_name=promote.study, storage=settings.storage)
        except KeyError:
            raise UserError(
                f"hydra.sweeper.promote.study={promote.study} is not in "
                f"{display_url(settings.storage)}; name a study of the same storage "
                "(outputs/sweeps/<study name>/)"
            ) from None
        done = earlier.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        target = earlier.user_attrs.get("target_acc", 101.0)  # none recorded: none met
        points += [dict(t.params) for t in promoted(done, promote.top, target)]
    return points


def enqueue_starting_points(
    study: optuna.Study, settings: Sweeper, distributions: dict[str, Any], fixed: dict[str, Any]
) -> None:
    """Queue the starting points once: a resumed study does not queue them again.

    A key the command line fixes keeps the command line's value.
    """
    for point in _points(study, settings):
        unknown = sorted(set(point) - set(distributions) - set(fixed))
        if unknown:
            raise UserError(
                f"hydra.sweeper.enqueue/promote names {', '.join(unknown)}, which the search "
                "space does not sweep; add them to hydra.sweeper.params or drop them"
            )
        swept = {k: v for k, v in point.items() if k in distributions}
        study.enqueue_trial(swept, skip_if_exists=True)
