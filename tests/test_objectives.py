"""What a sweep looks for: the holds rule over seeds, and the objectives beyond the
smallest net (accuracy, pareto, and the stock Optuna sweeper), each a real sweep."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.study import StudyDirection
from optuna.trial import TrialState

from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.search.seeds import verdict
from mnist_sweep.search.trial_result import TrialResult
from mnist_sweep.search.winner import Winner
from tests.conftest import error_in_process, run_in_process, run_sweep, sweep_folder

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(cwd: Path) -> optuna.Study:
    (name,) = optuna.get_all_study_names(f"sqlite:///{cwd}/outputs/optuna.db")
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/outputs/optuna.db")


# -- the holds rule -------------------------------------------------------------------------


def test_a_design_holds_on_its_mean_and_half_of_its_seeds():
    assert verdict([99.5, 99.3, 99.45, 99.4], 99.4, 4).holds  # mean 99.41, 3 of 4
    assert not verdict([99.6, 99.35, 99.35, 99.39], 99.4, 4).holds  # mean 99.42, 1 of 4
    assert not verdict([99.41, 99.41, 99.41, 99.35], 99.4, 4).holds  # 3 of 4, mean 99.395
    assert not verdict([99.5, 99.5], 99.4, 4).holds  # the verdict is over 4 seeds
    assert verdict([99.4], 99.4, 1).holds  # one seed: the old rule


def test_a_seed_is_spent_only_while_it_can_change_the_verdict():
    far = verdict([98.9], 99.4, 10)
    assert not far.worth_another(margin=0.1)  # far below the target: one seed
    near = verdict([99.33], 99.4, 10)
    assert near.worth_another(margin=0.1)
    six_misses = verdict([99.3, 99.35, 99.39, 99.38, 99.36, 99.37], 99.4, 10)
    assert not six_misses.worth_another(margin=1.0)  # 4 seeds left cannot make 5 hits
    done = verdict([99.5] * 10, 99.4, 10)
    assert done.holds and not done.worth_another(margin=0.1)


def test_the_constraint_is_satisfied_exactly_when_the_design_holds():
    assert verdict([99.5, 99.45], 99.4, 2).shortfall() <= 0
    assert verdict([99.6, 99.3, 99.3], 99.4, 3).shortfall() > 0  # mean 99.4, 1 of 3
    assert verdict([99.3], 99.4, 3).shortfall() == pytest.approx(0.1)


# -- seeds inside the sweep -------------------------------------------------------------------


@pytest.mark.slow
def test_seeds_inside_the_sweep_decide_the_winner(tmp_path, lean):
    # Target 17% on 800 images for 3 epochs: trials near it earn up to 3 seeds, those
    # more than 3 points below it stop after one.
    run_sweep(
        tmp_path,
        "hydra.sweeper.n_trials=3",
        "data.train_subset=800",
        "trainer.epochs=3",
        "hydra.sweeper.seeds=3",
        "hydra.sweeper.seed_margin=3",
        "hydra/sweeper/pruner=none",
        "trainer.seed=7",
        "target_acc=17",
    )
    sweep_dir, study = sweep_folder(tmp_path), _study(tmp_path)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3
    for t in trials:
        seeds, accs = TrialResult.of(t).seeds, TrialResult.of(t).seed_accs
        assert seeds == list(range(7, 7 + len(seeds))) and len(accs) == len(seeds) <= 3
        ruling = verdict(accs, 17, 3)
        assert TrialResult.of(t).holds == ruling.holds
        assert (t.constraints["accuracy"] <= 0) == ruling.holds
        if len(seeds) < 3:  # it stopped because one more seed could not change the answer:
            smaller_held = [
                o
                for o in trials
                if o.number < t.number and TrialResult.of(o).holds and o.value <= t.value
            ]
            assert not ruling.worth_another(3) or smaller_held, t.number
        # Every seed is an ordinary run folder, trained with its own seed.
        for seed, acc, run_dir in zip(seeds, accs, TrialResult.of(t).seed_run_dirs, strict=True):
            record = RunRecord.load(tmp_path / run_dir)
            assert (record.seed, record.test_acc, record.status) == (
                seed,
                acc,
                RunStatus.COMPLETED,
            )
            # Only the first reports to the trial; the others name it for the trackers.
            job = OmegaConf.load(tmp_path / run_dir / ".hydra" / "hydra.yaml").hydra.job
            first = seed == seeds[0]
            assert job.get("optuna_trial") == (t.number if first else None)
            assert job.get("optuna_seed_of") == (None if first else t.number)
    with (sweep_dir / "trials.csv").open() as f:
        rows = {int(r["trial"]): r for r in csv.DictReader(f)}
    for t in trials:
        assert rows[t.number]["seeds"] == " ".join(map(str, TrialResult.of(t).seeds))
        assert rows[t.number]["holds"] == str(TrialResult.of(t).holds)
    # The design that held first leaves a larger one near the target a single seed.
    assert any(
        len(TrialResult.of(t).seeds) == 1
        and verdict(TrialResult.of(t).seed_accs, 17, 3).worth_another(3)
        for t in trials
    )
    winner = Winner.load(sweep_dir)
    held = [t for t in trials if TrialResult.of(t).holds]
    assert held, "the low target is meant to let some design hold"
    best = min(held, key=lambda t: (t.value, -TrialResult.of(t).selection_acc, t.number))
    assert (winner.trial, winner.params, winner.holds) == (best.number, best.value, True)
    assert winner.seed_accs == TrialResult.of(best).seed_accs and len(winner.seed_accs) == 3
    assert winner.test_acc == pytest.approx(sum(winner.seed_accs) / 3)


# -- other objectives -------------------------------------------------------------------------

ACCURACY = [
    "-m",
    "hparams_search=accuracy",
    "model=tiny",
    "data.train_subset=500",
    "trainer.epochs=2",
    "data.augment.strength=0",
    "trainer.device=cpu",
    "hydra.sweeper.n_trials=3",
    "data.batch_size=64",
    "dropout.p=0",
]


@pytest.mark.slow
def test_an_accuracy_sweep_reports_its_most_accurate_trial(tmp_path, lean):
    run_in_process(tmp_path, *ACCURACY)
    study = _study(tmp_path)
    assert study.direction == StudyDirection.MAXIMIZE
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert done
    for t in done:  # each value is its run's own final-epoch test accuracy
        assert t.value == RunRecord.load(tmp_path / TrialResult.of(t).run_dir).test_acc
    winner = Winner.load(sweep_folder(tmp_path))
    assert winner.objective == "accuracy"
    assert (winner.trial, winner.test_acc) == (study.best_trial.number, study.best_value)


@pytest.mark.slow
def test_a_pareto_sweep_reports_the_front(tmp_path, lean):
    run_sweep(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.objective=pareto")
    study = _study(tmp_path)
    assert study.directions == [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE]
    winner = Winner.load(sweep_folder(tmp_path))
    front = {p.trial for p in winner.front or []}
    assert front == {t.number for t in study.best_trials}


STOCK = [
    "-m",
    "hydra/sweeper=optuna",
    "hydra.sweeper.n_trials=2",
    "hydra.sweeper.direction=maximize",
    "model=tiny",
    "data.train_subset=500",
    "trainer.epochs=1",
    "data.augment.strength=0",
    "trainer.device=cpu",
    "optimizer.lr=interval(0.01,0.1)",
]


@pytest.mark.slow
def test_the_stock_optuna_sweeper_maximises_the_optimized_metric(tmp_path):
    run_in_process(tmp_path, *STOCK, "optimized_metric=test_acc")
    (results,) = (tmp_path / "outputs").rglob("optimization_results.yaml")
    best = OmegaConf.load(results).best_value
    accs = [RunRecord.load(m.parent).test_acc for m in results.parent.rglob("metrics.json")]
    assert len(accs) == 2 and best == max(accs)


@pytest.mark.slow
def test_the_stock_optuna_sweeper_without_a_metric_is_one_line(tmp_path, capsys):
    err = error_in_process(capsys, tmp_path, *STOCK)
    # The stock sweeper logs its own lines first; the refusal is one line, the last.
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: hydra/sweeper=optuna") and "optimized_metric=test_acc" in line
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("metrics.json"))  # refused before any training
