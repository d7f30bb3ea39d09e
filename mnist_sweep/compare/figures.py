"""pareto.png and curves.png of the rows compare shows, drawn by mnist_sweep/plots.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mnist_sweep import plots
from mnist_sweep.compare.runs import RunRow, override_value
from mnist_sweep.compare.verdict import BELOW, MET, PRUNED, completed
from mnist_sweep.run import record

PARETO, CURVES = "pareto.png", "curves.png"
MAX_CURVES = 8  # runs drawn in colour and named; beyond this, colours cannot be told apart


def size_and_accuracy(row: RunRow) -> plots.Point:
    return (row.params or 0, row.test_acc or 0.0)


PARETO_TITLE = "accuracy vs size: fewer params and higher accuracy is better"


def pareto_results(rows: Sequence[RunRow], keys: Sequence[str]) -> list[plots.Result]:
    """The rows with a size and an accuracy, for pareto.png; the front's runs labelled."""
    front = {id(r) for r in plots.pareto_front(completed(rows), key=size_and_accuracy)}
    kinds = {MET: "target met", BELOW: "below target"}

    def label(row: RunRow) -> str | None:
        if id(row) not in front:
            return None
        # Labels with several overrides run into each other: then the run's name
        # only, which the table and comparison.csv resolve.
        return (
            f"{row.label} {keys[0]}={override_value(row, keys[0])}" if len(keys) == 1 else row.label
        )

    return [
        plots.Result(r.params, r.test_acc, kinds.get(r.verdict, "not completed"), label(r))
        for r in rows
        if r.params is not None and r.test_acc is not None
    ]


def accuracy_curves(rows: Sequence[RunRow]) -> list[plots.Curve]:
    """The first MAX_CURVES rows in the table's order in colour, named in the legend;
    the rest in grey. Pruned runs end in a cross where they stopped."""
    return [
        plots.Curve(
            r.curve,
            "highlight" if i < MAX_CURVES else "other runs",
            label=(f"{r.label} ({r.params:,} params)" if r.params else r.label)
            if i < MAX_CURVES
            else None,
            cut=r.verdict == PRUNED,
        )
        for i, r in enumerate([r for r in rows if r.curve])
    ]


def write_plots(
    rows: Sequence[RunRow], keys: Sequence[str], target: float | None, out: Path
) -> None:
    """pareto.png and curves.png of the rows into `out`; WriteError if the disk refuses."""
    results = pareto_results(rows, keys)
    record.atomic_write(out / PARETO, lambda tmp: plots.pareto(tmp, results, target, PARETO_TITLE))
    curves = accuracy_curves(rows)
    # The floor follows the runs that finished: a pruned or failed run stopped
    # low would squash the region where finished runs differ.
    finals = [r.test_acc for r in rows if r.verdict in (MET, BELOW) and r.test_acc is not None]
    title = "test accuracy per epoch"
    if len(curves) > MAX_CURVES:
        title += f" (the table's first {MAX_CURVES} of {len(curves)} runs in colour)"
    floor = plots.accuracy_floor(finals) if finals else None
    record.atomic_write(
        out / CURVES, lambda tmp: plots.curves(tmp, title, curves, target=target, floor=floor)
    )
