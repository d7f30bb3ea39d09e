"""The sweep's report, read from the study itself: winner.json and Hydra's own
optimization_results.yaml (search/winner.py), then the CSVs (the Pareto front, every
trial as trials.csv) and the plots researchers look at (the front, optimisation history,
parameter importances, per-epoch accuracy of every trial), all in the sweep folder.

`python -m mnist_sweep.search.report --study NAME [--storage URL]` writes it again for any
study, also one that is still running or was interrupted.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mnist_sweep import plots
from mnist_sweep.errors import UserError, exit_on_user_error
from mnist_sweep.errors import report as report_error
from mnist_sweep.run import record
from mnist_sweep.run.record import RunRecord
from mnist_sweep.search.pruning import is_feasible, reported_accuracy
from mnist_sweep.search.storage import display_url, refuse
from mnist_sweep.search.trial_result import TrialResult
from mnist_sweep.search.winner import Winner, overrides
from mnist_sweep.search.winner import write as write_winner
from mnist_sweep.sweep_files import TRIALS_CSV

log = logging.getLogger(__name__)

PARETO_CSV = "pareto_front.csv"
PARETO_PNG = "pareto_front.png"
HISTORY_PNG = "optimization_history.png"
IMPORTANCES_PNG = "param_importances.png"
INTERMEDIATE_PNG = "intermediate_values.png"
# Optuna's PED-ANOVA ranks parameters by what sets the top 10% of trials apart and
# takes at least 2 trials as that top: below 20 trials its "top 10%" is a larger share,
# and the plot would claim what the study cannot tell.
IMPORTANCE_TRIALS = 20


PARETO_FIELDS = [
    *("trial", "params", "selection_acc", "test_acc", "val_acc", "feasible", "on_front"),
    *("run_dir", "overrides", "seed_accs", "holds"),
]
TRIALS_FIELDS = [
    *("trial", "state", "params", "selection_acc", "test_acc", "val_acc", "target_acc"),
    *("feasible", "seeds", "seed_accs", "holds", "epochs_run", "seconds", "fail_reason"),
]


def _row(t: FrozenTrial) -> dict[str, Any]:
    """A trial as a CSV row: its result, and what the study says of it."""
    r = TrialResult.of(t)
    return {
        **r.model_dump(),
        "trial": t.number,
        "state": t.state.name,
        "params": _params(r),
        "feasible": t.state == TrialState.COMPLETE and is_feasible(t),
        "seeds": " ".join(map(str, r.seeds)),
        "seed_accs": " ".join(f"{a:g}" for a in r.seed_accs),
        "epochs_run": max(t.intermediate_values, default=None),
        "seconds": round(t.duration.total_seconds(), 1) if t.duration else None,
        **t.params,
    }


def _params(r: TrialResult) -> int | None:
    """A trial's parameter count: recorded by the sweep, else read from its run folder
    (a trial pruned or failed before the sweep recorded it)."""
    if r.params is not None or r.run_dir is None:
        return r.params
    try:
        return RunRecord.load(r.run_dir).params
    except UserError:
        return None


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    record.atomic_write(path, write)


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    """Every trial that ran: state, size, accuracy, epochs, time and each swept value."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    keys = sorted({k for t in trials for k in t.params})
    target = study.user_attrs.get("target_acc")  # set by the sweep
    _write_csv(path, TRIALS_FIELDS + keys, [{**_row(t), "target_acc": target} for t in trials])


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every completed trial, smallest first, marked when on the (params, accuracy) front:
    pareto_front.csv and its plot."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rows = [{**_row(t), "overrides": " ".join(overrides(t))} for t in trials]
    rows = [r for r in rows if r["selection_acc"] is not None and r["params"] is not None]
    front = plots.pareto_front(rows, key=lambda r: (r["params"], r["selection_acc"]))
    for row in rows:
        row["on_front"] = any(row is f for f in front)
    return sorted(rows, key=lambda r: (r["params"], -r["selection_acc"], r["trial"]))


def plot_front(path: Path, study: optuna.Study, rows: list[dict[str, Any]], winner: Winner) -> None:
    """Every completed trial on the size-accuracy plane: feasible ones apart, the winner
    labelled."""
    results = [
        plots.Result(
            r["params"],
            r["selection_acc"],
            "target met" if r["feasible"] else "below target",
            f"winner: {r['params']:,}" if r["trial"] == winner.trial else None,
        )
        for r in rows
    ]
    title = f"{study.study_name}: {len(rows)} completed trials"
    ylabel = f"final-epoch {winner.selection} accuracy (%)"
    plots.pareto(path, results, winner.target_acc, title, ylabel=ylabel)


def plot_history(path: Path, study: optuna.Study) -> None:
    """Optuna's optimisation history of the objective, the parameter count: the
    trials that met the target in colour with the best so far joined, the others grey."""
    with plots.optuna_figure(path) as optuna_plots:
        ax = optuna_plots.plot_optimization_history(study, target_name="parameters")
        ax.set_title(f"{study.study_name}: size of each trial (grey: below target)")


def plot_importances(path: Path, study: optuna.Study, selection: str) -> bool:
    """Optuna's parameter importances for the final accuracy (which parameters tell
    the accurate trials from the others); False when the study has too little to say."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    accs = {t.number: a for t in complete if (a := TrialResult.of(t).selection_acc) is not None}
    done = [t for t in complete if t.number in accs]
    names = {name for t in done for name in t.params}
    varying = [n for n in names if len({repr(t.params.get(n)) for t in done}) > 1]
    if len(done) < IMPORTANCE_TRIALS or not varying:
        log.info(
            "no %s: it needs %d completed trials whose parameters differ (the study has %d "
            "completed)",
            IMPORTANCES_PNG,
            IMPORTANCE_TRIALS,
            len(done),
        )
        return False
    with plots.optuna_figure(path) as optuna_plots, warnings.catch_warnings():
        # Optuna reminds that its evaluator ranks by *low* target values: the
        # error is passed for exactly that reason.
        warnings.filterwarnings("ignore", message=".*computes the importances of params")
        ax = optuna_plots.plot_param_importances(
            study,
            target=lambda t: 100.0 - accs.get(t.number, 0.0),
            target_name=f"final {selection} error",
        )
        ax.set_title(  # in place of Optuna's own, which stands at the left
            f"{study.study_name}: what sets final {selection} accuracy ({len(done)} trials)",
            loc="left",
        )
    return True


def plot_intermediate(path: Path, study: optuna.Study, winner: Winner) -> None:
    """Accuracy per epoch of every finished trial, from what each reported to the
    pruner: pruned trials stop short at a cross. The project's own curves plot, not
    Optuna's: that one plots the reported error and names each trial in its legend."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    curves = []
    for t in sorted(trials, key=lambda t: t.number != winner.trial):  # the winner first: on top
        points = [
            (step, reported_accuracy(study, value))
            for step, value in sorted(t.intermediate_values.items())
        ]
        if not points:
            continue
        params = TrialResult.of(t).params or 0
        label = f"winner: trial {t.number}, {params:,} params" if t.number == winner.trial else None
        if label:
            kind = "highlight"
        elif t.state == TrialState.PRUNED:
            kind = "pruned"
        else:
            kind = "target met" if is_feasible(t) else "below target"
        curves.append(plots.Curve(points, kind, label, cut=t.state == TrialState.PRUNED))
    if not curves:
        log.info("no %s: no trial reported an epoch", INTERMEDIATE_PNG)
        return
    # The floor takes in where pruned trials stopped, so that their cut shows.
    finals = [c.points[-1][1] for c in curves if not c.cut]
    ends = [c.points[-1][1] for c in curves if c.cut]
    plots.curves(
        path,
        f"{study.study_name}: {winner.selection} accuracy per epoch, {len(curves)} trials",
        curves,
        ylabel=f"{winner.selection} accuracy (%)",
        target=winner.target_acc,
        floor=plots.accuracy_floor(finals or ends, ends),
    )


def _plot_safely(draw: Callable[..., Any], path: Path, *args: Any) -> None:
    # The winner is written before any plot: a plot that cannot be drawn (a study
    # too small or too uniform for it) costs that file, never the report.
    try:
        draw(path, *args)
    except Exception as e:
        log.warning("skipped %s: %s: %s", path.name, type(e).__name__, e)


def write(study: optuna.Study, sweep_dir: Path, target: float) -> Winner:
    """The report (the files above) in `sweep_dir`; returns the winner."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    winner = write_winner(study, sweep_dir, target)
    rows = trial_rows(study)
    _write_csv(sweep_dir / PARETO_CSV, PARETO_FIELDS, rows)
    write_trials_csv(study, sweep_dir / TRIALS_CSV)
    if rows:
        _plot_safely(plot_front, sweep_dir / PARETO_PNG, study, rows, winner)
        if len(study.directions) == 1:  # Optuna's history plots one objective
            _plot_safely(plot_history, sweep_dir / HISTORY_PNG, study)
        _plot_safely(plot_importances, sweep_dir / IMPORTANCES_PNG, study, winner.selection)
    else:
        log.info("no %s, %s or %s: no trial completed", PARETO_PNG, HISTORY_PNG, IMPORTANCES_PNG)
    _plot_safely(plot_intermediate, sweep_dir / INTERMEDIATE_PNG, study, winner)
    for row in (r for r in rows if r["on_front"]):
        log.info(
            "  front: trial %d  %8s params  %.2f%%%s",
            row["trial"],
            f"{row['params']:,}",
            row["selection_acc"],
            "  (target met)" if row["feasible"] else "",
        )
    return winner


@exit_on_user_error()
def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m mnist_sweep.search.report", description=__doc__
    )
    parser.add_argument("--study", required=True, help="the study's name (its sweep folder's name)")
    parser.add_argument(
        "--storage", default="sqlite:///outputs/optuna.db", help="the study's storage URL"
    )
    parser.add_argument("--out", type=Path, help="folder to write to (default: its sweep folder)")
    parser.add_argument("--target", type=float, help="target accuracy (default: the study's own)")
    args = parser.parse_args(argv)
    if args.storage.startswith("sqlite:///") and not Path(args.storage[10:]).is_file():
        return report_error(f"no study database at {args.storage[10:]}; pass --storage")
    from sqlalchemy.exc import SQLAlchemyError

    try:
        study = optuna.load_study(study_name=args.study, storage=args.storage)
    except KeyError:
        return report_error(f"no study {args.study!r} in {display_url(args.storage)}")
    except (ImportError, SQLAlchemyError) as e:
        refuse(args.storage, e, setting="--storage")
    target = args.target if args.target is not None else study.user_attrs.get("target_acc")
    if target is None:
        return report_error(f"study {args.study!r} records no target; pass --target")
    out = args.out or Path("outputs") / "sweeps" / args.study
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write(study, out, target)
    print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
