"""What every tracker shares: the calls the training loop makes, where the run belongs in a
sweep, the config as flat hyperparameters, and the guard that keeps a failing store from
failing the run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hydra.types import RunMode

from mnist_sweep.run import record
from mnist_sweep.run.record import EpochRow, RunRecord, RunStatus

log = logging.getLogger(__name__)


class Tracker(Protocol):
    """A run as a tracking tool sees it: one call per finished epoch, one at the end."""

    def log_epoch(self, row: EpochRow) -> None: ...

    def finish(self, record: RunRecord) -> None:
        """The run ended as `record.status` says (completed, pruned or failed); its
        metrics.json and curves.png are written."""


class NoTracker:
    """`logger=none`: the run folder is the whole record."""

    def log_epoch(self, row: EpochRow) -> None:
        pass

    def finish(self, record: RunRecord) -> None:
        pass


@dataclass(frozen=True)
class RunLabels:
    """Where a run belongs: the study and trial it was launched for in a sweep, else None.
    `seed_run`: one of the trial's further seeds, not the run that reports to it."""

    study: str | None = None
    trial: int | None = None
    seed_run: bool = False


def run_labels(hydra_cfg: Any) -> RunLabels:
    """The labels of the job Hydra runs now: the sweeper puts the study's name in
    hydra.sweeper.study_name and the trial's number in hydra.job.<record.SWEEP_TRIAL>
    (a trial's further seeds its number in hydra.job.<record.SEED_OF>; a sweep's other
    jobs, such as the winner's confirmation seeds, have no trial)."""
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return RunLabels()
    study = hydra_cfg.sweeper.get("study_name")
    study = str(study) if study else None
    trial, seed_of = hydra_cfg.job.get(record.SWEEP_TRIAL), hydra_cfg.job.get(record.SEED_OF)
    if trial is None and seed_of is not None:
        return RunLabels(study=study, trial=seed_of, seed_run=True)
    return RunLabels(study=study, trial=trial)


# What an Optuna trial's state is called once the run that the trial launched ends.
TRIAL_STATE = {
    RunStatus.COMPLETED: "COMPLETE",
    RunStatus.PRUNED: "PRUNED",
    RunStatus.FAILED: "FAIL",
    RunStatus.INTERRUPTED: "FAIL",  # the sweep tells Optuna so, with the signal as reason
    RunStatus.RUNNING: "RUNNING",
}

Scalar = str | int | float | bool


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """A nested config as dotted keys with scalar values, the form tracking tools take
    hyperparameters in: a list becomes its text, null becomes "null"."""
    flat: dict[str, Scalar] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        elif value is None:
            flat[name] = "null"
        elif isinstance(value, (str, int, float, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def final_figures(metrics: RunRecord) -> dict[str, float]:
    """The figures known only once a run ends (the per-epoch ones are logged as they come)."""
    figures: dict[str, float] = {
        "params": float(metrics.params),
        "epochs": float(len(metrics.epochs)),  # fewer than planned: pruned or failed
        "reached_target": float(metrics.reached_target),
        "wall_seconds": metrics.wall_seconds,
        "train_seconds": metrics.train_seconds,
    }
    if metrics.best_test_acc is not None and metrics.best_epoch is not None:
        figures["best_test_acc"] = metrics.best_test_acc
        figures["best_epoch"] = float(metrics.best_epoch)
    return figures


class Guarded:
    """A tracker whose first failure is one warning and the end of its tracking.

    A store that goes away mid-run must not cost the training: metrics.json
    already holds everything, so the run goes on and says once what the
    tracking tool will lack. `mask` takes secrets out of the failure's text.
    """

    def __init__(self, tracker: Tracker, name: str, mask: Callable[[str], str]) -> None:
        self.tracker, self.name, self.mask = tracker, name, mask
        self.broken = False

    def log_epoch(self, row: EpochRow) -> None:
        self._call(self.tracker.log_epoch, row)

    def finish(self, record: RunRecord) -> None:
        self._call(self.tracker.finish, record)

    def _call(self, method: Callable[[Any], None], arg: Any) -> None:
        if self.broken:
            return
        try:
            method(arg)
        except Exception as e:
            self.broken = True
            lines = str(e).strip().splitlines()
            why = self.mask(lines[0] if lines else type(e).__name__)
            log.warning(
                "%s tracking failed (%s: %s); training goes on without it, and metrics.json "
                "in the run folder keeps the whole record",
                self.name,
                type(e).__name__,
                why,
            )
