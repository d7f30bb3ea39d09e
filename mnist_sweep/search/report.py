"""The sweep's report, read from the study itself: winner.json, the Pareto front, every
trial as trials.csv, the plots researchers look at (optimisation history, parameter
importances, per-epoch accuracy of every trial) and Hydra's own
optimization_results.yaml, all in the sweep folder.

`python -m mnist_sweep.search.report --study NAME [--storage URL]` writes it again for any
study, also one that is still running or was interrupted.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from mnist_sweep import plots
from mnist_sweep.errors import UserError, exit_on_user_error
from mnist_sweep.errors import report as report_error
from mnist_sweep.run import record
from mnist_sweep.schema.sweeper import Goal
from mnist_sweep.search.pruning import is_feasible, reported_accuracy, selection_split
from mnist_sweep.search.storage import display_url, refuse
from mnist_sweep.search.winner import WINNER, FrontPoint, Winner
from mnist_sweep.sweep_files import TRIALS_CSV

log = logging.getLogger(__name__)

__all__ = ["WINNER", "Winner", "main", "trial_rows", "write", "write_trials_csv"]

PARETO_CSV = "pareto_front.csv"
PARETO_PNG = "pareto_front.png"
HISTORY_PNG = "optimization_history.png"
IMPORTANCES_PNG = "param_importances.png"
INTERMEDIATE_PNG = "intermediate_values.png"
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
    seed_accs: list[float]
    holds: bool


def _overrides(trial: FrozenTrial) -> list[str]:
    """The run's full override list as Hydra saved it, else the sampled parameters."""
    run_dir = trial.user_attrs.get("run_dir")
    saved = Path(run_dir) / record.HYDRA_OVERRIDES if run_dir else None
    if saved is not None and saved.is_file():
        return [str(o) for o in OmegaConf.load(saved)]
    return [f"{k}={v}" for k, v in trial.params.items()]


def _objective_values(t: FrozenTrial) -> tuple[int, float]:
    """A completed trial's (params, selection accuracy), whatever the study's objective."""
    a = t.user_attrs
    return int(a.get("params", t.values[0])), float(a["selection_acc"])


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "selection_acc" in t.user_attrs
    ]
    front = plots.pareto_front(complete, key=_objective_values)
    on_front = {t.number for t in front}
    rows = [
        TrialRow(
            trial=t.number,
            params=_objective_values(t)[0],
            selection_acc=t.user_attrs["selection_acc"],
            test_acc=t.user_attrs["test_acc"],
            val_acc=t.user_attrs.get("val_acc"),
            feasible=is_feasible(t),
            on_front=t.number in on_front,
            run_dir=t.user_attrs.get("run_dir"),
            overrides=_overrides(t),
            seed_accs=list(t.user_attrs.get("seed_accs", [t.user_attrs["selection_acc"]])),
            holds=is_feasible(t),
        )
        for t in complete
    ]
    return sorted(rows, key=lambda r: (r.params, -r.selection_acc, r.trial))


def pick_winner(rows: list[TrialRow], goal: Goal = Goal.SMALLEST) -> TrialRow | None:
    """smallest and pareto: fewest parameters among the trials that held the target (never
    an infeasible one); accuracy: the most accurate trial."""
    if goal is Goal.ACCURACY:
        return max(rows, key=lambda r: (r.selection_acc, -r.params, -r.trial), default=None)
    feasible = [r for r in rows if r.feasible]
    return min(feasible, key=lambda r: (r.params, -r.selection_acc, r.trial)) if feasible else None


def _selection(rows: list[TrialRow]) -> str:
    """Which split the sweep selected on."""
    return selection_split({"val_acc": rows[0].val_acc}) if rows else "test"


def _counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}


def _accs(accs: list[float]) -> str:
    return " / ".join(f"{a:.2f}" for a in accs)


def winner_record(
    study: optuna.Study, rows: list[TrialRow], target: float, goal: Goal = Goal.SMALLEST
) -> Winner:
    winner = pick_winner(rows, goal)
    base = {
        "study": study.study_name, "objective": goal.value, "target_acc": target,
        "selection": _selection(rows), "trials": _counts(study),
    }  # fmt: skip
    if goal is Goal.PARETO:
        base["front"] = [
            FrontPoint(trial=r.trial, params=r.params, selection_acc=r.selection_acc)
            for r in rows
            if r.on_front
        ]
    if winner is None:
        closest = max(rows, key=lambda r: r.selection_acc, default=None)
        hint = (
            f" (closest: trial {closest.trial}, {_accs(closest.seed_accs)}%"
            f" with {closest.params:,} params)"
            if closest
            else ""
        )
        return Winner(
            **base,
            message=f"no trial reached {target}% (the holds rule){hint}; widen the search space, "
            "train longer (trainer.epochs), give it more seeds or lower target_acc",
        )
    t = study.get_trials(deepcopy=False)[winner.trial]
    seeds = t.user_attrs.get("seeds")
    if goal is Goal.ACCURACY:
        message = (
            f"most accurate trial: {winner.trial}, {winner.params:,} params, "
            f"{winner.selection_acc:.2f}% final-epoch {_selection(rows)} accuracy"
        )
    else:
        message = (
            f"smallest net holding {target}%: trial {winner.trial}, {winner.params:,} params, "
            f"final-epoch {_selection(rows)} accuracy {_accs(winner.seed_accs)}%"
            + (f" (mean {winner.selection_acc:.2f}% over {len(seeds)} seeds)" if seeds and
               len(seeds) > 1 else " (one seed: confirm it on fresh seeds)")
        )  # fmt: skip
    return Winner(
        **base,
        params=winner.params, test_acc=winner.test_acc, val_acc=winner.val_acc,
        selection_acc=winner.selection_acc, overrides=winner.overrides,
        run_dir=winner.run_dir, trial=winner.trial, seeds=seeds,
        seed_accs=winner.seed_accs, seed_test_accs=t.user_attrs.get("seed_test_accs"),
        holds=winner.holds, message=message,
    )  # fmt: skip


def _write_csv(path: Path, rows: list[TrialRow]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(TrialRow.__dataclass_fields__))
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {**asdict(row), "overrides": " ".join(row.overrides),
                     "seed_accs": " ".join(f"{a:g}" for a in row.seed_accs)}
                )  # fmt: skip

    record.atomic_write(path, write)


def _params(t: FrozenTrial) -> int | None:
    """A trial's parameter count: recorded by the sweep, else read from its run folder
    (a trial pruned or failed before the sweep recorded it)."""
    if "params" in t.user_attrs:
        return int(t.user_attrs["params"])
    run_dir = t.user_attrs.get("run_dir")
    try:
        return record.RunRecord.load(run_dir).params if run_dir else None
    except UserError:
        return None


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    """Every trial that ran: state, size, accuracy, epochs, time and each swept value."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    keys = sorted({k for t in trials for k in t.params})
    fields = ["trial", "state", "params", "selection_acc", "test_acc", "val_acc", "target_acc",
              "feasible", "seeds", "seed_accs", "holds", "epochs_run", "seconds", "fail_reason",
              *keys]  # fmt: skip

    def row(t: FrozenTrial) -> dict[str, Any]:
        a = t.user_attrs
        seconds = (
            round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
            if t.datetime_complete and t.datetime_start
            else None
        )
        return {
            "trial": t.number,
            "state": t.state.name,
            "params": _params(t),
            "selection_acc": a.get("selection_acc"),
            "test_acc": a.get("test_acc"),
            "val_acc": a.get("val_acc"),
            "target_acc": a.get("target_acc"),
            "feasible": is_feasible(t) if t.state == TrialState.COMPLETE else False,
            "seeds": " ".join(map(str, a.get("seeds", []))),
            "seed_accs": " ".join(f"{x:g}" for x in a.get("seed_accs", [])),
            "holds": a.get("holds"),
            "epochs_run": max(t.intermediate_values, default=None),
            "seconds": seconds,
            "fail_reason": a.get("fail_reason"),
            **{k: t.params.get(k) for k in keys},
        }

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(row(t) for t in trials)

    record.atomic_write(path, write)


def front_results(rows: list[TrialRow]) -> list[plots.Result]:
    """Every completed trial for the Pareto plot: feasible ones apart, the winner labelled."""
    winner = pick_winner(rows)
    return [
        plots.Result(
            r.params,
            r.selection_acc,
            "target met" if r.feasible else "below target",
            f"winner: {r.params:,}" if r is winner else None,
        )
        for r in rows
    ]


def plot_history(study: optuna.Study, path: Path) -> None:
    """Optuna's optimisation history of the objective, the parameter count: the
    trials that met the target in colour with the best so far joined, the others grey."""
    with plots.optuna_figure(path) as optuna_plots:
        ax = optuna_plots.plot_optimization_history(study, target_name="parameters")
        ax.set_title(f"{study.study_name}: size of each trial (grey: below target)")


def plot_importances(study: optuna.Study, path: Path, selection: str) -> bool:
    """Optuna's parameter importances for the final accuracy (which parameters tell
    the accurate trials from the others); False when the study has too little to say."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "selection_acc" in t.user_attrs
    ]
    names = {name for t in done for name in t.params}
    varying = [n for n in names if len({repr(t.params.get(n)) for t in done}) > 1]
    if len(done) < 2 or not varying:
        log.info(
            "no %s: it needs 2 completed trials whose parameters differ (the study has %d "
            "completed)", IMPORTANCES_PNG, len(done),
        )  # fmt: skip
        return False
    with plots.optuna_figure(path) as optuna_plots, warnings.catch_warnings():
        # Optuna reminds that its evaluator ranks by *low* target values: the
        # error is passed for exactly that reason.
        warnings.filterwarnings("ignore", message=".*computes the importances of params")
        ax = optuna_plots.plot_param_importances(
            study,
            target=lambda t: 100.0 - t.user_attrs["selection_acc"],
            target_name=f"final {selection} error",
        )
        ax.set_title(  # in place of Optuna's own, which stands at the left
            f"{study.study_name}: what sets final {selection} accuracy ({len(done)} trials)",
            loc="left",
        )
    return True


def plot_intermediate(
    study: optuna.Study, path: Path, target: float, selection: str, winner: int | None
) -> None:
    """Accuracy per epoch of every finished trial, from what each reported to the
    pruner: pruned trials stop short at a cross. The project's own curves plot, not
    Optuna's: that one plots the reported error and names each trial in its legend."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    curves = []
    for t in sorted(trials, key=lambda t: t.number != winner):  # the winner first: on top
        points = [
            (step, reported_accuracy(study, value))
            for step, value in sorted(t.intermediate_values.items())
        ]
        if not points:
            continue
        label = (
            f"winner: trial {t.number}, {t.user_attrs.get('params', 0):,} params"
            if t.number == winner
            else None
        )
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
        path, f"{study.study_name}: {selection} accuracy per epoch, {len(curves)} trials", curves,
        ylabel=f"{selection} accuracy (%)", target=target,
        floor=plots.accuracy_floor(finals or ends, ends),
    )  # fmt: skip


def _plot_safely(name: str, draw: Callable[[], Any]) -> None:
    # The winner is written before any plot: a plot that cannot be drawn (a study
    # too small or too uniform for it) costs that file, never the report.
    try:
        draw()
    except Exception as e:
        log.warning("skipped %s: %s: %s", name, type(e).__name__, e)


def study_target(study: optuna.Study) -> float | None:
    """The target the sweep ran with: set on the study when the sweep starts (older
    studies: on their trials)."""
    targets = [t.user_attrs["target_acc"] for t in study.trials if "target_acc" in t.user_attrs]
    target = study.user_attrs.get("target_acc", targets[-1] if targets else None)
    return None if target is None else float(target)


def goal_of(study: optuna.Study) -> Goal:
    """What the study was looking for, from its directions."""
    if len(study.directions) > 1:
        return Goal.PARETO
    return Goal.ACCURACY if study.direction == StudyDirection.MAXIMIZE else Goal.SMALLEST


def write(study: optuna.Study, sweep_dir: Path, target: float) -> Winner:
    """Write winner.json, the Pareto front (csv, png), the optimisation history, parameter
    importances and intermediate values (png) and optimization_results.yaml; return the
    winner."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    goal = goal_of(study)
    winner = winner_record(study, rows, target, goal)
    winner.save(sweep_dir)
    _write_csv(sweep_dir / PARETO_CSV, rows)
    write_trials_csv(study, sweep_dir / TRIALS_CSV)
    selection = _selection(rows)
    if rows:
        title = f"{study.study_name}: {len(rows)} completed trials"
        _plot_safely(
            PARETO_PNG,
            lambda: plots.pareto(
                sweep_dir / PARETO_PNG,
                front_results(rows),
                target,
                title,
                ylabel=f"final-epoch {selection} accuracy (%)",
            ),
        )
        if goal is not Goal.PARETO:  # Optuna's history plots one objective
            _plot_safely(HISTORY_PNG, lambda: plot_history(study, sweep_dir / HISTORY_PNG))
        _plot_safely(
            IMPORTANCES_PNG,
            lambda: plot_importances(study, sweep_dir / IMPORTANCES_PNG, selection),
        )
    else:
        log.info("no %s, %s or %s: no trial completed", PARETO_PNG, HISTORY_PNG, IMPORTANCES_PNG)
    _plot_safely(
        INTERMEDIATE_PNG,
        lambda: plot_intermediate(
            study, sweep_dir / INTERMEDIATE_PNG, target, selection, winner.trial
        ),
    )
    # Hydra's stock result file, with the feasible winner as the "best" trial.
    best = next((t for t in study.trials if t.number == winner.trial), None)
    OmegaConf.save(
        OmegaConf.create(
            {
                "name": "optuna",
                "best_params": dict(best.params) if best else None,
                "best_value": (best.values[0] if len(best.values) == 1 else best.values)
                if best
                else None,
            }
        ),
        sweep_dir / RESULTS,
    )
    log.info(winner.message)
    for row in (r for r in rows if r.on_front):
        log.info(
            "  front: trial %d  %8s params  %.2f%%%s",
            row.trial, f"{row.params:,}", row.selection_acc,
            "  (target met)" if row.feasible else "",
        )  # fmt: skip
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
    parser.add_argument("--target", type=float, help="target accuracy (default: the trials' own)")
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
    target = args.target if args.target is not None else study_target(study)
    if target is None:
        return report_error(f"study {args.study!r} records no target; pass --target")
    out = args.out or Path("outputs") / "sweeps" / args.study
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write(study, out, target)
    print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
