"""comparison.csv: every row the table shows, with every key that differs, values whole."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from mnist_sweep.compare.runs import RunRow, override_value
from mnist_sweep.run import record

CSV = "comparison.csv"


def _round(value: float | None) -> float | None:
    # metrics.json holds float32 accuracies: 99.4 is stored as 99.40000152587891.
    return None if value is None else round(value, 4)


def write_csv(rows: Sequence[RunRow], keys: Sequence[str], path: Path) -> None:
    """The rows as comparison.csv at `path`; WriteError if the disk refuses it."""
    fields = ["run", *keys, "params", "test_acc", "best_epoch_test_acc", "best_epoch"]
    fields += ["epochs_run", "epochs_planned", "wall_seconds", "target_acc", "status"]
    fields += ["overrides", "run_dir"]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(fields)
            for r in rows:
                writer.writerow(
                    [r.label, *(override_value(r, k) for k in keys), r.params, _round(r.test_acc)]
                    + [_round(r.best_test_acc), r.best_epoch, len(r.curve), r.epochs_planned]
                    + [r.wall_seconds, r.target_acc, r.verdict, " ".join(r.overrides), str(r.path)]
                )

    record.atomic_write(path, write)
