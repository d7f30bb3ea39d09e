"""The sweep folder's files that modules outside search/ read, named and read here.

search/report.py writes trials.csv (one row per trial); `compare` reads from it
why a trial whose process was killed failed, without importing search/ (or
Optuna).
"""

from __future__ import annotations

import csv
from pathlib import Path

TRIALS_CSV = "trials.csv"  # every trial, one row each: the evidence a search commits
FAILED = "FAIL"  # a failed trial's "state" in trials.csv (optuna's TrialState.FAIL.name)


def fail_reasons(sweep_dir: Path) -> dict[int, str]:
    """Why each failed trial of a sweep failed, by trial number, from the sweep folder's
    trials.csv ({} before the sweep's report is written)."""
    try:
        with (sweep_dir / TRIALS_CSV).open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return {
        int(row["trial"]): row.get("fail_reason") or "failed in its sweep (no reason recorded)"
        for row in rows
        if row.get("state") == FAILED and str(row.get("trial")).isdigit()
    }
