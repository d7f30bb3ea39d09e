"""The sweep's report, read from the study itself: winner.json, the Pareto front, and
Hydra's own optimization_results.yaml, all in the sweep folder."""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from mnist_sweep import plots, run_folder
from mnist_sweep.pruning import is_feasible

log = logging.getLogger(__name__)

WINNER = "winner.json"
PARETO_CSV = "pareto_front.csv"
PARETO_PNG = "pareto_front.png"
RESULTS = "optimization_results.yaml"


@dataclass
class TrialRow:
    trial: int
    params: int
    selection_acc: float
    test_acc: float
    val_acc: float | None
    feasible: bool
    on_front: bool
    run_dir: str | None
    overrides: list[str]


def _overrides(trial: FrozenTrial) -> list[str]:
    """The run's full override list as Hydra saved it, else the sampled parameters."""
    run_dir = trial.user_attrs.get("run_dir")
    saved = Path(run_dir) / ".hydra" / "overrides.yaml" if run_dir else None
    if saved is not None and saved.is_file():
        return [str(o) for o in OmegaConf.load(saved)]
    return [f"{k}={v}" for k, v in trial.params.items()]


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "selection_acc" in t.user_attrs
    ]
    front = plots.pareto_front(complete, key=lambda t: (t.value, t.user_attrs["selection_acc"]))
    on_front = {t.number for t in front}
    rows = [
        TrialRow(
            trial=t.number,
            params=int(t.value),
            selection_acc=t.user_attrs["selection_acc"],
            test_acc=t.user_attrs["test_acc"],
            val_acc=t.user_attrs.get("val_acc"),
            feasible=is_feasible(t),
            on_front=t.number in on_front,
            run_dir=t.user_attrs.get("run_dir"),
            overrides=_overrides(t),
        )
        for t in complete
    ]
    return sorted(rows, key=lambda r: (r.params, -r.selection_acc, r.trial))


def pick_winner(rows: list[TrialRow]) -> TrialRow | None:
    """Fewest parameters among the trials that met the target (never an infeasible one)."""
    feasible = [r for r in rows if r.feasible]
    return min(feasible, key=lambda r: (r.params, -r.selection_acc, r.trial)) if feasible else None


def _selection(rows: list[TrialRow]) -> str:
    """Which split the sweep selected on."""
    return "val" if rows and rows[0].val_acc is not None else "test"


def _counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}


def winner_record(study: optuna.Study, rows: list[TrialRow], target: float) -> dict[str, Any]:
    winner = pick_winner(rows)
    record: dict[str, Any] = {
        "study": study.study_name,
        "target_acc": target,
        "selection": _selection(rows),
        "trials": _counts(study),
    }
    if winner is None:
        closest = max(rows, key=lambda r: r.selection_acc, default=None)
        hint = (
            f" (closest: trial {closest.trial}, {closest.selection_acc:.2f}%"
            f" with {closest.params:,} params)"
            if closest
            else ""
        )
        record.update(
            params=None, test_acc=None, val_acc=None, selection_acc=None,
            overrides=None, run_dir=None, trial=None,
            message=f"no trial reached {target}%{hint}; widen the search space, "
            "train longer (trainer.epochs) or lower target_acc",
        )  # fmt: skip
    else:
        record.update(
            params=winner.params, test_acc=winner.test_acc, val_acc=winner.val_acc,
            selection_acc=winner.selection_acc, overrides=winner.overrides,
            run_dir=winner.run_dir, trial=winner.trial,
            message=f"smallest net reaching {target}%: trial {winner.trial}, "
            f"{winner.params:,} params, {winner.selection_acc:.2f}% final-epoch accuracy "
            "(one seed: confirm it on fresh seeds)",
        )  # fmt: skip
    return record


def _write_csv(path: Path, rows: list[TrialRow]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(TrialRow.__dataclass_fields__))
            writer.writeheader()
            for row in rows:
                writer.writerow({**asdict(row), "overrides": " ".join(row.overrides)})

    run_folder.atomic_write(path, write)


def plot_front(path: Path, rows: list[TrialRow], target: float, title: str) -> None:
    """Every completed trial by size and accuracy; feasible ones highlighted, front joined."""
    winner = pick_winner(rows)
    plots.size_vs_accuracy(
        path,
        {
            "target met": [(r.params, r.selection_acc) for r in rows if r.feasible],
            "below target": [(r.params, r.selection_acc) for r in rows if not r.feasible],
        },
        [(r.params, r.selection_acc) for r in rows if r.on_front],
        [(f"winner: {winner.params:,}", (winner.params, winner.selection_acc))] if winner else [],
        target,
        title,
        ylabel=f"final-epoch {_selection(rows)} accuracy (%)",
    )


def write(study: optuna.Study, sweep_dir: Path, target: float) -> dict[str, Any]:
    """Write winner.json, pareto.csv/png and optimization_results.yaml; return the winner record."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    record = winner_record(study, rows, target)
    run_folder.write_json(sweep_dir / WINNER, record)
    _write_csv(sweep_dir / PARETO_CSV, rows)
    if rows:
        plot_front(
            sweep_dir / PARETO_PNG,
            rows,
            target,
            f"{study.study_name}: {len(rows)} completed trials",
        )
    # Hydra's stock result file, with the feasible winner as the "best" trial.
    best = next((t for t in study.trials if t.number == record["trial"]), None)
    OmegaConf.save(
        OmegaConf.create(
            {
                "name": "optuna",
                "best_params": dict(best.params) if best else None,
                "best_value": best.value if best else None,
            }
        ),
        sweep_dir / RESULTS,
    )
    log.info(record["message"])
    for row in (r for r in rows if r.on_front):
        log.info(
            "  front: trial %d  %8s params  %.2f%%%s",
            row.trial, f"{row.params:,}", row.selection_acc,
            "  (target met)" if row.feasible else "",
        )  # fmt: skip
    return record
