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

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_sweep.run.record import RunRecord
from mnist_sweep.track.base import Guarded, NoTracker, RunLabels, Tracker, run_labels

__all__ = ["RunLabels", "Tracker", "open_tracker", "run_labels"]


def open_tracker(
    cfg: DictConfig, run_dir: Path, record: RunRecord, labels: RunLabels | None = None
) -> Tracker:
    """The tracker the config's `logger` group names, started for this run (the epochs
    `record` already holds, a resumed run's, are sent first); UserError if its store
    cannot be reached."""
    logger_cfg: dict[str, Any] = OmegaConf.to_container(  # type: ignore[assignment]
        cfg.get("logger") or {"kind": "none"}, resolve=True
    )
    labels = labels or RunLabels()
    kind = logger_cfg["kind"]
    if kind == "none":
        return NoTracker()
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    resolved.pop("logger", None)  # how a run is watched is not part of what it trains
    if kind == "tensorboard":
        from mnist_sweep.track.tensorboard import TensorBoardTracker

        return Guarded(TensorBoardTracker(run_dir, resolved, record), "tensorboard", str)
    if kind == "mlflow":
        from mnist_sweep.track import mlflow

        tracker = mlflow.start(logger_cfg, run_dir, resolved, record, labels)
        return Guarded(tracker, "mlflow", tracker.mask)
    raise AssertionError(f"logger.kind {kind!r} passed the schema")
