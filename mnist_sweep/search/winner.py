"""winner.json: what a sweep found, picked from Optuna's best trials, declared once and read
back typed (by confirm, by the report CLI, by anyone scripting over sweeps); beside it
Hydra's own optimization_results.yaml."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from mnist_sweep.errors import UserError
from mnist_sweep.run import record
from mnist_sweep.schema.sweeper import Goal
from mnist_sweep.search.trial_result import TrialResult

log = logging.getLogger(__name__)

WINNER = "winner.json"
RESULTS = "optimization_results.yaml"
REWRITE = "write it again with python -m mnist_sweep.search.report --study <its study>"


class FrontPoint(BaseModel):
    trial: int
    params: int
    selection_acc: float


class Winner(BaseModel):
    """The sweep's answer. Fields of the winning trial are null, with a message naming the
    closest trial, when no trial qualified."""

    model_config = ConfigDict(extra="forbid")

    study: str | None = None
    objective: str = "smallest"
    target_acc: float | None = None
    selection: str = "test"  # the split trials were judged on: "test", or "val" if held out
    trials: dict[str, int] = {}  # trial counts by state
    params: int | None = None
    test_acc: float | None = None  # the mean over the trial's seeds
    val_acc: float | None = None
    selection_acc: float | None = None
    seeds: list[int] | None = None
    seed_accs: list[float] | None = None  # each seed's final-epoch selection accuracy
    seed_test_accs: list[float] | None = None
    holds: bool | None = None  # the holds rule over the trial's seeds
    overrides: list[str] | None = None
    run_dir: str | None = None
    trial: int | None = None
    front: list[FrontPoint] | None = None  # pareto: the (params, accuracy) front
    message: str = ""

    @model_validator(mode="after")
    def _says_what_it_ran(self) -> Winner:
        missing = [k for k in ("overrides", "run_dir", "target_acc") if getattr(self, k) is None]
        if self.params is not None and missing:
            raise PydanticCustomError("incomplete", f"no {', '.join(missing)}")
        return self

    def save(self, sweep_dir: Path) -> None:
        record.write_json(sweep_dir / WINNER, self.model_dump(mode="json"))

    @classmethod
    def load(cls, sweep_dir: Path) -> Winner:
        """The sweep folder's winner.json; UserError, one line, when it is missing or damaged."""
        path = sweep_dir / WINNER
        try:
            return cls.model_validate_json(path.read_bytes())
        except OSError as e:
            raise UserError(f"cannot read {path} ({e}); pass a finished sweep folder") from None
        except ValidationError as e:
            error = e.errors()[0]
            where = ".".join(map(str, error["loc"])) or "top level"
            raise UserError(f"{path} is damaged ({where}: {error['msg']}); {REWRITE}") from None


def overrides(trial: FrozenTrial) -> list[str]:
    """The run's full override list as Hydra saved it, else the sampled parameters."""
    run_dir = TrialResult.of(trial).run_dir
    saved = Path(run_dir) / record.HYDRA_OVERRIDES if run_dir else None
    if saved is not None and saved.is_file():
        return [str(o) for o in OmegaConf.load(saved)]
    return [f"{k}={v}" for k, v in trial.params.items()]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The sweep's answer among Optuna's best trials (`study.best_trials`: the feasible
    ones in a constrained study, every trial tied at the best value included): smallest,
    the fewest parameters that hold the target; accuracy, the best value; pareto, the
    smallest trial on the front that holds it. Ties go to the more accurate trial, then
    the earlier one (Optuna's `best_trial` would take any of them)."""
    trials = [(t, TrialResult.of(t)) for t in study.best_trials]
    trials = [(t, r) for t, r in trials if r.selection_acc is not None]
    if Goal.of(study.directions) is Goal.PARETO:
        trials = [(t, r) for t, r in trials if r.holds]
    best = min(
        trials,
        key=lambda tr: (tr[0].values[0], -tr[1].selection_acc, tr[0].number),  # type: ignore[operator]
        default=None,
    )
    return best[0] if best else None


def _accs(accs: list[float]) -> str:
    return " / ".join(f"{a:.2f}" for a in accs)


def winner_of(study: optuna.Study, target: float) -> Winner:
    """The study's winner.json: its best trial, or a message naming the closest one."""
    goal = Goal.of(study.directions)
    complete = {
        t.number: (t, r)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if (r := TrialResult.of(t)).selection_acc is not None and r.params is not None
    }
    states = [t.state for t in study.get_trials(deepcopy=False)]
    winner = Winner(
        study=study.study_name,
        objective=goal.value,
        target_acc=target,
        selection=next((r.selection for _, r in complete.values() if r.selection), "test"),
        trials={s.name.lower(): states.count(s) for s in TrialState},
    )
    if goal is Goal.PARETO:
        front = [complete[t.number] for t in study.best_trials if t.number in complete]
        winner.front = [FrontPoint(trial=t.number, **r.model_dump()) for t, r in front]
    best = best_trial(study)
    if best is None:
        closest = max(complete.values(), key=lambda tr: tr[1].selection_acc, default=None)  # type: ignore[arg-type, return-value]
        hint = ""
        if closest is not None:
            t, r = closest
            accs = _accs(r.seed_accs or [r.selection_acc])  # type: ignore[list-item]
            hint = f" (closest: trial {t.number}, {accs}% with {r.params:,} params)"
        winner.message = (
            f"no trial reached {target}% (the holds rule){hint}; widen the search space, train "
            "longer (trainer.epochs), give it more seeds or lower target_acc"
        )
        return winner
    r = TrialResult.of(best)
    seed_accs = r.seed_accs or [r.selection_acc]
    if goal is Goal.ACCURACY:
        winner.message = (
            f"most accurate trial: {best.number}, {r.params:,} params, "
            f"{r.selection_acc:.2f}% final-epoch {winner.selection} accuracy"
        )
    else:
        over = f"mean {r.selection_acc:.2f}% over {len(r.seeds)} seeds"
        winner.message = (
            f"smallest net holding {target}%: trial {best.number}, {r.params:,} params, "
            f"final-epoch {winner.selection} accuracy {_accs(seed_accs)}% "
            + (f"({over})" if len(r.seeds) > 1 else "(one seed: confirm it on fresh seeds)")
        )
    fields = {"params", "test_acc", "val_acc", "selection_acc", "holds", "run_dir"}
    return winner.model_copy(
        update={
            **r.model_dump(include=fields),
            "overrides": overrides(best),
            "trial": best.number,
            "seeds": r.seeds or None,
            "seed_accs": seed_accs,
            "seed_test_accs": r.seed_test_accs or None,
        }
    )


def write(study: optuna.Study, sweep_dir: Path, target: float) -> Winner:
    """winner.json and Hydra's stock optimization_results.yaml, with the winner as its
    "best" trial; returns the winner."""
    winner = winner_of(study, target)
    winner.save(sweep_dir)
    best = None if winner.trial is None else study.get_trials(deepcopy=False)[winner.trial]
    value = None if best is None else best.values[0] if len(best.values) == 1 else best.values
    results = {
        "name": "optuna",
        "best_params": dict(best.params) if best else None,
        "best_value": value,
    }
    OmegaConf.save(OmegaConf.create(results), sweep_dir / RESULTS)
    log.info(winner.message)
    return winner
