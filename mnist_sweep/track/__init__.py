"""Experiment tracking: a run's figures sent to TensorBoard or MLflow as it trains.

The `logger` config group picks the backend (`none`, `tensorboard`, `mlflow`).
The run folder stays the record: metrics.json is written before a tracker
hears of an epoch, and a tracker only copies the figures to the tools that
researchers compare runs in.

`open_tracker` starts the backend before any training, so a store that cannot
be reached ends the run with one line (UserError). After that, a failing
store costs one warning and the tracking for the rest of the run, never the
training (`Guarded`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mnist_sweep.errors import UserError
from mnist_sweep.run.record import RunRecord
from mnist_sweep.track.base import Guarded, NoTracker, RunLabels, Tracker, run_labels

__all__ = ["RunLabels", "Tracker", "check_store", "open_tracker", "run_labels"]


def check_store(logger_cfg: Mapping[str, Any] | None) -> None:
    """UserError unless the tracker the `logger` section names can start: its package is
    installed and its store answers. A sweep calls it once, before any trial."""
    kind = (logger_cfg or {}).get("kind", "none")
    if kind == "none" or logger_cfg is None:
        return
    _check_package(kind)
    if kind == "mlflow":
        from mnist_sweep.track import mlflow

        mlflow.check(logger_cfg)


def _check_package(kind: str) -> None:
    if importlib.util.find_spec(kind) is None:  # the package is named as the option is
        raise UserError(f"logger={kind} needs the {kind} package: pip install -e '.[tracking]'")


def open_tracker(
    logger_cfg: Mapping[str, Any] | None,
    config: dict[str, Any],
    run_dir: Path,
    record: RunRecord,
    labels: RunLabels | None = None,
) -> Tracker:
    """The tracker the resolved `logger` section names (None: none), started for the run
    trained with `config` (the rest of the resolved config: its hyperparameters); the
    epochs `record` already holds, a resumed run's, are sent first. UserError if its store
    cannot be reached."""
    kind = (logger_cfg or {}).get("kind", "none")
    if kind == "none" or logger_cfg is None:
        return NoTracker()
    _check_package(kind)
    if kind == "tensorboard":
        from mnist_sweep.track.tensorboard import TensorBoardTracker

        return Guarded(TensorBoardTracker(run_dir, config), "tensorboard", str)
    if kind == "mlflow":
        from mnist_sweep.track import mlflow

        tracker = mlflow.start(logger_cfg, run_dir, config, record, labels or RunLabels())
        return Guarded(tracker, "mlflow", tracker.mask)
    raise AssertionError(f"logger.kind {kind!r} passed the schema")
