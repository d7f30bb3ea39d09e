"""A run's verdict, the table's "status", and the options that keep, order and cut rows.

The verdict is the record's status, with a completed run judged against the
target, and a "running" run whose process is gone shown as failed (when its
sweep says why) or incomplete.
"""

from __future__ import annotations

from collections.abc import Sequence

from mnist_sweep.compare.runs import (
    BELOW,
    FAILED,
    INCOMPLETE,
    INTERRUPTED,
    MET,
    PRUNED,
    RUNNING,
    STATUSES,
    RunRow,
)
from mnist_sweep.run.record import RunStatus

__all__ = [
    "BELOW",
    "FAILED",
    "INCOMPLETE",
    "INTERRUPTED",
    "MET",
    "PRUNED",
    "RUNNING",
    "STATUSES",
    "classify",
    "completed",
    "failure_notes",
    "sort_and_filter",
]


def classify(row: RunRow, target: float | None) -> str:
    """The run's verdict: how its record stands, a completed run judged against the target."""
    if row.record_status is None:
        return INCOMPLETE  # no record: killed at once, or stopped by its config
    if row.record_status is RunStatus.RUNNING:
        if row.alive:
            return RUNNING
        return FAILED if row.reason else INCOMPLETE  # killed
    if row.record_status is not RunStatus.COMPLETED:
        return row.record_status.value  # pruned, failed or interrupted
    if row.test_acc is None:
        return INCOMPLETE
    goal = target if target is not None else row.target_acc
    return MET if goal is not None and row.test_acc >= goal else BELOW


def sort_and_filter(
    rows: Sequence[RunRow],
    sort: str = "params",
    target: float | None = None,
    statuses: Sequence[str] | None = None,
    top: int | None = None,
) -> list[RunRow]:
    """Set each row's verdict, then keep, order and cut the rows the options ask for
    (`statuses`: the verdicts to keep)."""
    for row in rows:
        row.verdict = classify(row, target)
    kept = [
        r
        for r in rows
        if (target is None or (r.test_acc is not None and r.test_acc >= target))
        and (not statuses or r.verdict in statuses)
    ]
    inf = float("inf")
    keys = {  # unknown values sort last; ties go to the more accurate run
        "params": lambda r: (r.params is None, r.params or 0, -(r.test_acc or -inf)),
        "acc": lambda r: (r.test_acc is None, -(r.test_acc or 0), r.params or inf),
        "time": lambda r: (r.wall_seconds is None, r.wall_seconds or 0, r.params or inf),
    }
    kept.sort(key=keys[sort])
    return kept[:top] if top is not None else kept


def completed(rows: Sequence[RunRow]) -> list[RunRow]:
    """The runs that may enter a Pareto front: a pruned or running run's accuracy
    is not a final one."""
    return [r for r in rows if r.verdict in (MET, BELOW) and r.params is not None]


def failure_notes(rows: Sequence[RunRow]) -> list[str]:
    """Why each failed run failed, where its record or its sweep says."""
    return [f"{r.label} failed: {r.reason}" for r in rows if r.verdict == FAILED and r.reason]
