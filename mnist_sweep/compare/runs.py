"""One run folder as a table row, read through run/record.py, and the overrides it ran with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_sweep import sweep_files
from mnist_sweep.errors import RunRecordError
from mnist_sweep.run import record
from mnist_sweep.run.record import RunRecord, RunStatus

# A run's verdict (compare/verdict.py): its record's status, a completed run judged
# against the target.
MET, BELOW = "target met", "below target"
PRUNED, FAILED, RUNNING = RunStatus.PRUNED.value, RunStatus.FAILED.value, RunStatus.RUNNING.value
INTERRUPTED = RunStatus.INTERRUPTED.value  # stopped by SIGINT or SIGTERM; resumable
INCOMPLETE = "incomplete"
STATUSES = (MET, BELOW, PRUNED, FAILED, INTERRUPTED, RUNNING, INCOMPLETE)


@dataclass
class RunRow:
    path: Path
    overrides: list[str]
    config: dict[str, Any]
    choices: dict[str, Any]  # Hydra's group choices, e.g. {"model": "small"}
    record_status: RunStatus | None = None  # metrics.json's status; None before it exists
    alive: bool = False  # for a "running" record: whether its process is still at work
    reason: str | None = None  # why it failed: its error, or for a dead run its sweep's reason
    params: int | None = None
    test_acc: float | None = None
    best_test_acc: float | None = None
    best_epoch: int | None = None
    epochs_planned: int | None = None
    wall_seconds: float | None = None
    target_acc: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    label: str = ""
    verdict: str = INCOMPLETE  # set by verdict.sort_and_filter, against the target in force


def load_run(path: Path) -> RunRow | str:
    """One run folder as a row, or a one-line warning saying why it cannot be read."""
    try:
        # Hydra writes .hydra/ before the job starts, so it is there even for a
        # run killed at once; metrics.json only comes after the first epoch.
        overrides, config = record.load_overrides(path), record.load_config(path)
        try:  # only for naming the default option of a config group, and a sweep's trial
            hydra = record.load_hydra_runtime(path)
        except RunRecordError:
            hydra = {}
        row = RunRow(path, overrides, config, record.group_choices(hydra))
        row.target_acc = config.get("target_acc")
        row.epochs_planned = (config.get("trainer") or {}).get("epochs")
        if not (path / record.METRICS).exists():
            return row
        m = RunRecord.load(path)
    except RunRecordError as e:
        return f"warning: skipping {path}: {Path(e.path).relative_to(path)} {e.problem}"
    row.record_status, row.reason = m.status, m.error
    if m.status is RunStatus.RUNNING:
        row.alive = m.still_running(path)
        if not row.alive:  # killed: its sweep, if any, may have recorded why
            row.reason = _sweep_fail_reason(path, record.sweep_trial(hydra))
    row.params, row.test_acc = m.params, m.test_acc
    row.best_test_acc, row.best_epoch = m.best_test_acc, m.best_epoch
    row.epochs_planned, row.wall_seconds = m.epochs_planned, m.wall_seconds
    row.target_acc = m.target_acc
    row.curve = [(e.epoch, float(e.test_acc)) for e in m.epochs]
    return row


def _sweep_fail_reason(run_dir: Path, trial: int | None) -> str | None:
    """Why the sweep failed this run's trial, from the report in the sweep folder around it.

    Only the process that trains a run writes its record: a trial whose process
    was killed says "running" for good, and its reason is in the sweep's report.
    """
    return None if trial is None else sweep_files.fail_reasons(run_dir.parent).get(trial)


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def differing_overrides(rows: Sequence[RunRow]) -> list[str]:
    """Overridden keys whose value is not the same in every row, in first-seen order."""
    keys = dict.fromkeys(_split(o)[0] for r in rows for o in r.overrides)
    # Compared by the value each run ran with, so `model=small` next to a run
    # that took the default small model is no difference.
    return [k for k in keys if len({override_value(r, k) for r in rows}) > 1]


def override_value(row: RunRow, key: str) -> str:
    """The run's override for key, else the value it ran with (a run may use the default)."""
    value = dict(map(_split, row.overrides)).get(key)
    if value is not None:
        return value
    if key in row.choices:
        return str(row.choices[key])
    node: Any = row.config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None or isinstance(node, dict | list) else str(node)
