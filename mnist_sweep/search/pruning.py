"""The link between a sweep trial and its training run: per-epoch reports and pruning,
and the project's own pruners."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from hydra.utils import instantiate
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from mnist_sweep.run import record
from mnist_sweep.schema.sweeper import Goal

if TYPE_CHECKING:
    from mnist_sweep.run.train import EpochCallback


def selection_split(metrics: dict[str, Any]) -> str:
    """The split a sweep selects on: validation when held out, else test (the default)."""
    return "val" if metrics.get("val_acc") is not None else "test"


def selection_accuracy(metrics: dict[str, Any]) -> float:
    return metrics[f"{selection_split(metrics)}_acc"]


def to_reported(study: optuna.Study, accuracy: float) -> float:
    """What a trial reports per epoch: its accuracy in an accuracy sweep (one objective,
    maximised), else its error in points (100 - accuracy), which the smallest-net sweep
    minimises; so every pruner, comparing in the study's direction, prunes the trials
    learning worst."""
    return accuracy if Goal.of(study.directions) is Goal.ACCURACY else 100.0 - accuracy


reported_accuracy = to_reported  # the accuracy behind a reported value: the map is its own inverse


def is_feasible(trial: FrozenTrial) -> bool:
    return bool(trial.constraints) and all(v <= 0 for v in trial.constraints.values())


@dataclass
class TargetPruner(BasePruner):
    """Prune a trial that is behind every trial that went on to reach the target.

    At epoch e, a trial is pruned when its error is above the worst error that
    any feasible (target-reaching) trial had at epoch e, plus `margin` points.
    Unlike a median rule, it does not punish a small net for being less
    accurate than big ones early on: only for being behind all the winners.
    Until `n_feasible_trials` trials have reached the target it prunes nothing.
    """

    n_warmup_steps: int = 1
    margin: float = 0.0
    n_feasible_trials: int = 1

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        winners = [
            t.intermediate_values[step]
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if is_feasible(t) and step in t.intermediate_values
        ]
        if len(winners) < self.n_feasible_trials:
            return False
        return trial.intermediate_values[step] > max(winners) + self.margin


def build_pruner(pruner_cfg: Any) -> BasePruner:
    if pruner_cfg is None:
        return optuna.pruners.NopPruner()
    return instantiate(
        pruner_cfg, _execution_whitelist_=["optuna.pruners.*", "mnist_sweep.search.pruning.*"]
    )


@dataclass
class ReachablePruner(BasePruner):
    """Prune a trial only once the target is out of its reach.

    At epoch e, the most any completed trial of the study gained from epoch e
    to its end (in accuracy points, on the split the sweep selects on) bounds
    what this trial can still gain. A trial is pruned when its accuracy plus
    that gain plus `margin` is still below the target. Early accuracy under a
    high one-cycle lr swings by points; the largest gain seen covers those
    swings, so a small net that is behind now but recovers as the lr falls is
    kept. Nothing is pruned before `n_warmup_steps` epochs or before
    `n_min_trials` trials have completed.
    """

    n_warmup_steps: int = 5
    margin: float = 0.1
    n_min_trials: int = 4

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        target = study.user_attrs.get("target_acc")  # the sweep sets it
        gains = []
        for done in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            curve = done.intermediate_values
            if step in curve and curve:
                end, now = curve[max(curve)], curve[step]
                gains.append(reported_accuracy(study, end) - reported_accuracy(study, now))
        if target is None or len(gains) < self.n_min_trials:
            return False
        now = reported_accuracy(study, trial.intermediate_values[step])
        best_case = now + max(gains) + self.margin
        return best_case < float(target)


def trial_reporter(hydra_cfg: Any) -> EpochCallback | None:
    """Per-epoch callback for the sweep trial this job runs, or None outside one.

    The sweeper names the trial with the job override `hydra.job.<record.SWEEP_TRIAL>=<number>`;
    the study is the one `hydra.sweeper.storage` and `study_name` name.
    """
    number = hydra_cfg.job.get(record.SWEEP_TRIAL)
    if number is None:
        return None
    sweeper_cfg = hydra_cfg.sweeper
    study = optuna.load_study(
        study_name=sweeper_cfg.study_name,
        storage=sweeper_cfg.storage,
        pruner=build_pruner(sweeper_cfg.get("pruner")),
    )
    if len(study.directions) > 1:
        return None  # Optuna prunes single-objective trials only
    # The job runs in another process than its trial's sweep: Optuna's public API reaches
    # a trial of another process only by its id.
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    trial = optuna.Trial(study, trial_id)

    def report(metrics: dict[str, Any]) -> None:
        epoch = metrics["epochs"][-1]["epoch"]
        accuracy = selection_accuracy(metrics)
        trial.report(to_reported(study, accuracy), step=epoch)
        if epoch < metrics["epochs_planned"] and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with {accuracy:.2f}% accuracy")

    return report


def stack_reporter(hydra_cfg: Any) -> Callable[[dict[int, dict[str, Any]]], None] | None:
    """`trial_reporter` for a trial whose seeds train stacked: each epoch it reports the
    live seeds' mean, so the design is pruned on its mean, not on one seed's luck."""
    report = trial_reporter(hydra_cfg)
    if report is None:
        return None

    def report_mean(per_seed: dict[int, dict[str, Any]]) -> None:
        runs = list(per_seed.values())
        mean = sum(selection_accuracy(m) for m in runs) / len(runs)
        report({**runs[0], f"{selection_split(runs[0])}_acc": mean})

    return report_mean
