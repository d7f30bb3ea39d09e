"""`logger=mlflow`: each run an MLflow run; a sweep one experiment named after its study.

`logger.tracking_uri` names the store as MLflow does: an `http(s)://` tracking
server, a database URL (`sqlite:///...`, `postgresql://...`), or a plain
folder, which becomes a SQLite database and an artifact folder inside it
(MLflow 3 refuses its old folder format unless told otherwise). A password in
the URL is masked in every line this module writes, as the study storage's is.

A run is tagged with its folder, its status (completed, pruned or failed) and,
in a sweep, its study and trial number and the state the trial ends in (a
trial's further seeds: its number and seed_run=true).
MLflow's own status is FINISHED, KILLED (pruned) or FAILED.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mnist_sweep.errors import UserError
from mnist_sweep.run.record import CHECKPOINT, CURVES, METRICS, EpochRow, RunRecord, RunStatus
from mnist_sweep.secrets import display_url, mask_secrets
from mnist_sweep.track.base import TRIAL_STATE, RunLabels, final_figures, flatten

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "mnist_sweep"  # a run outside a sweep, unless logger.experiment names one
DATABASE = "mlflow.db"  # in a folder store
ARTIFACTS = "artifacts"  # beside the database of a folder or SQLite store
SETTING = "logger.tracking_uri (or MLFLOW_TRACKING_URI)"
STATUS = {
    RunStatus.COMPLETED: "FINISHED",
    RunStatus.PRUNED: "KILLED",
    RunStatus.FAILED: "FAILED",
    RunStatus.INTERRUPTED: "KILLED",
}
BATCH = 100  # params per log_batch call: MLflow's limit

# MLflow retries a request to a server 7 times with exponential backoff, which
# would hold a run for minutes on a server that has gone; one retry rides out
# a blip. Set only where the user has not chosen.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def store(uri: str) -> tuple[str, str | None]:
    """The MLflow tracking URI for `logger.tracking_uri`, and where new experiments keep
    their artifacts (None: where MLflow puts them, e.g. the server's store)."""
    if "://" not in uri and not uri.startswith("file:"):
        folder = Path(uri).expanduser().resolve()
        return f"sqlite:///{folder / DATABASE}", str(folder / ARTIFACTS)
    if uri.startswith("sqlite:///"):
        database = Path(uri[len("sqlite:///") :]).expanduser().resolve()
        return f"sqlite:///{database}", str(database.parent / ARTIFACTS)
    return uri, None


def _probe_database(uri: str) -> None:
    """Connect once, quickly: MLflow's own engine retries a refused database for minutes."""
    from sqlalchemy import create_engine

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(uri)
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


class MlflowTracker:
    def __init__(
        self, client: Any, run_id: str, run_dir: Path, uri: str, labels: RunLabels, checkpoint: bool
    ) -> None:
        self.client, self.run_id, self.run_dir = client, run_id, run_dir
        self.uri, self.labels, self.checkpoint = uri, labels, checkpoint

    def mask(self, text: str) -> str:
        return mask_secrets(text, self.uri)

    def _metrics(self, figures: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in figures.items()]
        )

    def log_epoch(self, row: EpochRow) -> None:
        figures = {k: v for k, v in row.to_dict().items() if k != "epoch" and v is not None}
        self._metrics(figures, row.epoch)

    def finish(self, record: RunRecord) -> None:
        step = record.epochs[-1].epoch if record.epochs else 0
        try:
            self._metrics(final_figures(record), step)
            self.client.set_tag(self.run_id, "status", record.status.value)
            if self.labels.trial is not None and not self.labels.seed_run:
                self.client.set_tag(self.run_id, "trial_state", TRIAL_STATE[record.status])
            for name in (CURVES, METRICS, *((CHECKPOINT,) if self.checkpoint else ())):
                if (self.run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.run_dir / name))
        finally:  # whatever else failed, the run should not stay RUNNING on the server
            self.client.set_terminated(self.run_id, STATUS.get(record.status, "FAILED"))


def _reach(uri: str) -> None:
    """Raise unless the store answers: one quick connection to a database, one request
    to a server."""
    scheme = uri.split(":", 1)[0]
    if scheme not in ("http", "https", "file", "databricks"):
        _probe_database(uri)
    elif scheme in ("http", "https"):
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def _unreachable(uri: str, e: Exception) -> UserError:
    lines = str(getattr(e, "orig", None) or e).strip().splitlines()
    why = mask_secrets(lines[0] if lines else type(e).__name__, uri)
    return UserError(
        f"cannot reach MLflow tracking store {display_url(uri)} ({type(e).__name__}: {why}); "
        f"check that it is running and the URL, or name another with {SETTING}"
    )


def check(cfg: Mapping[str, Any]) -> None:
    """UserError unless the store `cfg` names can be reached: a sweep asks once, before
    its first trial, instead of letting every trial fail on it."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri, _ = store(str(cfg["tracking_uri"]))
    try:
        _reach(uri)
    except Exception as e:
        raise _unreachable(uri, e) from None


def start(
    cfg: Mapping[str, Any],
    run_dir: Path,
    config: dict[str, Any],
    record: RunRecord,
    labels: RunLabels,
) -> MlflowTracker:
    """An MLflow run for this training, in the experiment it belongs to; UserError if the
    store cannot be reached or used."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri, artifacts = store(str(cfg["tracking_uri"]))
    shown = display_url(uri)
    name = cfg.get("experiment") or labels.study or DEFAULT_EXPERIMENT
    try:
        if uri.split(":", 1)[0] not in ("http", "https", "file", "databricks"):
            _probe_database(uri)
        run = _create_run(uri, artifacts, name, run_dir, config, labels)
    except UserError:
        raise
    except Exception as e:
        raise _unreachable(uri, e) from None
    client, run_id = run
    tracker = MlflowTracker(client, run_id, run_dir, uri, labels, bool(cfg.get("log_checkpoint")))
    for row in record.epochs:  # a resumed run: the epochs before the interruption
        tracker.log_epoch(row)
    log.info("mlflow: run %s in experiment %r at %s", run_id, name, shown)
    return tracker


def _create_run(
    uri: str,
    artifacts: str | None,
    name: str,
    run_dir: Path,
    config: dict[str, Any],
    labels: RunLabels,
) -> tuple[Any, str]:
    from mlflow import MlflowClient
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name, artifact_location=artifacts)
        except MlflowException:  # another trial of the sweep created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            experiment_id = experiment.experiment_id
    else:
        experiment_id = experiment.experiment_id
    tags = {"run_dir": str(run_dir.resolve()), "status": RunStatus.RUNNING.value}
    if labels.study is not None:
        tags["study"] = labels.study
    if labels.trial is not None:
        tags["trial"] = str(labels.trial)
        if labels.seed_run:  # the trial's state is its first seed's run's to tell
            tags["seed_run"] = "true"
        else:
            tags["trial_state"] = TRIAL_STATE[RunStatus.RUNNING]
    run_id = client.create_run(experiment_id, tags=tags, run_name=run_dir.name).info.run_id
    params = [Param(k, str(v)) for k, v in flatten(config).items()]
    for i in range(0, len(params), BATCH):
        client.log_batch(run_id, params=params[i : i + BATCH])
    return client, run_id
