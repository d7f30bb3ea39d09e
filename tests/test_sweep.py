"""The smallest-architecture search: real sweeps on real MNIST, checked against the study itself."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import signal
import subprocess
import warnings
from pathlib import Path

import matplotlib.image
import optuna
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from mnist_sweep import plots
from mnist_sweep.compare.runs import load_run
from mnist_sweep.compare.verdict import FAILED, sort_and_filter
from mnist_sweep.config import compose_config
from mnist_sweep.run import record
from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.schema.sweeper import Goal
from mnist_sweep.search import confirm as confirm_cli
from mnist_sweep.search import report
from mnist_sweep.search.confirm import launcher_overrides
from mnist_sweep.search.objective import FINISHED
from mnist_sweep.search.pruning import TargetPruner, is_feasible
from mnist_sweep.search.samplers import bind_grid
from mnist_sweep.search.space import parse_space
from mnist_sweep.search.sweeper import derive_study_name
from mnist_sweep.search.trial_result import TrialResult
from mnist_sweep.search.winner import WINNER
from tests.conftest import (
    CLI,
    DATA_ROOT,
    REPO,
    SWEEP,
    cli_env,
    error_in_process,
    lean_runs,
    run_in_process,
    run_sweep,
    start_cli,
    sweep_folder,
    wait_until,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(cwd: Path) -> optuna.Study:
    (name,) = optuna.get_all_study_names(f"sqlite:///{cwd}/outputs/optuna.db")
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/outputs/optuna.db")


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory, worker_id) -> Path:
    """One real 4-trial sweep that selects on a held-out validation split, run once for
    the whole session: the first pytest-xdist worker to need it runs it, under a lock
    in the folder every worker shares, and the others read it.

    1,000 training images for 3 epochs: enough that some trials clear the 20%
    target by a wide margin (about 25-35%) while others are pruned near chance.
    """
    # The session's folder: above each worker's own, or, without pytest-xdist, its own
    # (the one above that holds earlier sessions').
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent
    cwd, done = shared / "finished_sweep", shared / "finished_sweep.done"
    with (shared / "finished_sweep.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            cwd.mkdir(exist_ok=True)
            with lean_runs():  # the report and the study are what its tests read
                run_sweep(
                    cwd,
                    "hydra.sweeper.n_trials=4",
                    "data.train_subset=1000",
                    "trainer.epochs=3",
                    "data.val_size=200",
                )
            done.touch()
    return cwd


@pytest.mark.slow
def test_sweep_report_matches_the_study(finished_sweep):
    study, sweep_dir = _study(finished_sweep), sweep_folder(finished_sweep)
    assert sweep_dir.name == study.study_name
    trials = study.trials
    assert sum(t.state in FINISHED for t in trials) == 4
    assert not [t for t in trials if t.state == TrialState.RUNNING]

    winner = json.loads((sweep_dir / "winner.json").read_text())
    assert {"params", "test_acc", "overrides", "run_dir", "trial"} <= winner.keys()
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and is_feasible(t)]
    assert feasible, "the fixture sweep is meant to have feasible trials"
    expected = min(feasible, key=lambda t: (t.value, -TrialResult.of(t).selection_acc, t.number))
    assert winner["trial"] == expected.number
    assert winner["params"] == expected.value
    assert study.best_trial.value == winner["params"]  # Optuna's own constrained best agrees
    # Selection ran on the validation split; the test accuracy is reported beside it.
    assert winner["selection"] == "val"
    assert winner["val_acc"] == TrialResult.of(expected).val_acc >= 20
    assert winner["test_acc"] == TrialResult.of(expected).test_acc
    run_metrics = RunRecord.load(Path(finished_sweep) / winner["run_dir"])
    assert run_metrics.params == winner["params"]
    assert run_metrics.test_acc == winner["test_acc"]
    assert "hparams_search=smallest" in winner["overrides"]

    rows = (sweep_dir / "pareto_front.csv").read_text().splitlines()
    assert len(rows) - 1 == sum(t.state == TrialState.COMPLETE for t in trials)
    assert (sweep_dir / "pareto_front.png").read_bytes()[:4] == b"\x89PNG"
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert results.best_value == winner["params"]
    assert dict(results.best_params) == expected.params


@pytest.mark.slow
def test_sweep_records_its_throughput(finished_sweep):
    record = json.loads((sweep_folder(finished_sweep) / "throughput.json").read_text())
    assert "scheduler" not in record  # Optuna's loop schedules; nothing to name
    assert (record["launcher"], record["workers"], record["trials"]) == ("BasicLauncher", 1, 4)
    wall, busy = record["wall_seconds"], record["trial_seconds"]
    assert 0 < busy <= wall
    assert record["utilisation"] == pytest.approx(busy / wall, abs=1e-3)
    assert record["trials_per_hour"] == pytest.approx(4 * 3600 / wall, rel=1e-3)


def test_confirm_runs_through_the_sweeps_launcher(tmp_path):
    saved = {
        "hydra": {
            "overrides": {
                "hydra": [
                    "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=3",
                    "hydra.sweeper.n_jobs=3",
                    "hydra.sweep.subdir=trial_004",
                    f"++hydra.job.{record.SWEEP_TRIAL}=4",
                ]
            }
        }
    }
    (tmp_path / record.HYDRA_DIR).mkdir()
    OmegaConf.save(OmegaConf.create(saved), tmp_path / record.HYDRA_RUNTIME)
    assert launcher_overrides(tmp_path) == ["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"]


def _check_png(path: Path) -> None:
    image = matplotlib.image.imread(path)  # a PNG that loads
    height, width = image.shape[:2]
    assert height > 200 and width > 300, path.name
    assert image.std() > 0.01, f"{path.name} is blank"


@pytest.mark.slow
def test_sweep_folder_holds_the_report_plots(finished_sweep):
    sweep_dir = sweep_folder(finished_sweep)
    for name in [report.PARETO_PNG, report.HISTORY_PNG, report.INTERMEDIATE_PNG]:
        _check_png(sweep_dir / name)
    assert not (sweep_dir / report.IMPORTANCES_PNG).exists()  # 4 trials say nothing of it


def test_importances_are_drawn_once_the_study_has_enough_trials(tmp_path):
    study = optuna.create_study(direction="minimize")
    space = {"model.w1": IntDistribution(2, 9), "model.w2": IntDistribution(2, 9)}
    for i in range(report.IMPORTANCE_TRIALS):
        w1, w2 = 2 + i % 8, 2 + (i * 3) % 8
        acc, size = 90.0 + w1, 100 * (w1 + w2)  # w1 alone sets the accuracy
        study.add_trial(
            create_trial(
                value=size,
                params={"model.w1": w1, "model.w2": w2},
                distributions=space,
                user_attrs=TrialResult(selection_acc=acc, test_acc=acc, params=size).attrs(),
                constraints={"accuracy": 95.0 - acc},
            )
        )
    report.write(study, tmp_path, 95.0)
    _check_png(tmp_path / report.IMPORTANCES_PNG)


def test_a_study_too_small_for_a_plot_skips_it_with_a_log_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mnist_sweep.search.report")
    report.write(_study_with([(900, 99.5)], target=99.4), tmp_path, 99.4)
    assert (tmp_path / WINNER).is_file()
    assert (tmp_path / report.HISTORY_PNG).is_file() and (tmp_path / report.PARETO_PNG).is_file()
    assert not (tmp_path / report.IMPORTANCES_PNG).exists()
    assert f"no {report.IMPORTANCES_PNG}: it needs 20 completed trials" in caplog.text
    report.write(optuna.create_study(), tmp_path / "empty", 99.4)  # no trial at all
    assert not list((tmp_path / "empty").glob("*.png"))
    assert "no trial completed" in caplog.text


@pytest.mark.slow
def test_confirm_retrains_the_winner_on_fresh_seeds(finished_sweep, monkeypatch, capsys):
    sweep_dir = sweep_folder(finished_sweep)
    winner = json.loads((sweep_dir / "winner.json").read_text())
    assert winner["params"] is not None, winner["message"]
    monkeypatch.chdir(finished_sweep)
    monkeypatch.setenv("MNIST_DATA", str(DATA_ROOT))
    # Its main() in this process; the seeds' multirun is the command line's, as for a user.
    assert confirm_cli.main([str(sweep_dir), "--seeds", "2"]) == 0
    confirm = json.loads((sweep_dir / "confirm.json").read_text())
    assert [s["seed"] for s in confirm["seeds"]] == [1, 2]  # the search ran on seed 0
    accs = [s["test_acc"] for s in confirm["seeds"]]
    assert all(s["status"] == RunStatus.COMPLETED for s in confirm["seeds"])
    assert confirm["min_test_acc"] == min(accs)
    assert confirm["mean_test_acc"] == pytest.approx(sum(accs) / 2)
    assert confirm["params"] == winner["params"]
    for seed in confirm["seeds"]:
        metrics = RunRecord.load(seed["run_dir"])
        assert metrics.params == winner["params"] and metrics.seed == seed["seed"]
    assert "held on" in capsys.readouterr().out


def _study_with(trials: list[tuple[int, float]], target: float) -> optuna.Study:
    study = optuna.create_study(direction="minimize")
    for params, acc in trials:
        study.add_trial(
            create_trial(
                value=params,
                user_attrs=TrialResult(selection_acc=acc, test_acc=acc, params=params).attrs(),
                constraints={"accuracy": target - acc},
            )
        )
    return study


@pytest.mark.slow
def test_infeasible_trial_is_never_the_winner(tmp_path):
    # The smallest trial misses the target by a hair; the winner must be the next feasible one.
    study = _study_with([(900, 99.39), (1500, 99.41), (1200, 98.0), (3000, 99.6)], target=99.4)
    winner = report.write(study, tmp_path, 99.4)
    assert (winner.params, winner.test_acc) == (1500, 99.41)
    front = [
        line.split(",")[:2] for line in (tmp_path / "pareto_front.csv").read_text().splitlines()[1:]
    ]
    assert [params for _, params in front] == ["900", "1200", "1500", "3000"]

    none_met = _study_with([(900, 99.0), (1500, 99.2)], target=99.4)
    winner = report.write(none_met, tmp_path / "none", 99.4)
    assert winner.params is None and winner.trial is None
    assert "no trial reached 99.4%" in winner.message and "99.20%" in winner.message
    assert OmegaConf.load(tmp_path / "none" / "optimization_results.yaml").best_value is None


def test_pareto_front_keeps_only_undominated_points():
    points = [(100, 90.0), (200, 95.0), (150, 89.0), (300, 94.0), (400, 99.0), (400, 98.0)]
    assert plots.pareto_front(points) == [(100, 90.0), (200, 95.0), (400, 99.0)]
    runs = [{"name": "a", "size": 300, "acc": 99.0}, {"name": "b", "size": 100, "acc": 99.5}]
    assert plots.pareto_front(runs, key=lambda r: (r["size"], r["acc"])) == [runs[1]]


def test_target_pruner_stops_trials_behind_every_winner():
    study = optuna.create_study(direction="minimize", pruner=TargetPruner(n_warmup_steps=1))
    study.add_trial(
        create_trial(
            value=1000, intermediate_values={1: 10.0, 2: 5.0}, constraints={"accuracy": -0.1}
        )
    )
    study.add_trial(  # infeasible trials do not set the bar
        create_trial(
            value=500, intermediate_values={1: 50.0, 2: 40.0}, constraints={"accuracy": 30.0}
        )
    )

    def pruned_after(errors: dict[int, float]) -> bool:
        trial = study.ask()
        for step, error in errors.items():
            trial.report(error, step)
        decision = trial.should_prune()
        study.tell(trial, state=TrialState.FAIL)
        return decision

    assert pruned_after({1: 12.0}) is True  # behind the winner's 10% error at epoch 1
    assert pruned_after({1: 9.0}) is False
    assert pruned_after({1: 9.0, 2: 6.0}) is True
    assert TargetPruner(n_feasible_trials=2).prune(study, study.trials[0]) is False


def test_study_name_follows_the_command():
    space = {"model.w1": "range(3,13)"}
    name = derive_study_name("smallest", ["hparams_search=smallest", "trainer.epochs=20"], space)
    assert name.startswith("smallest-")
    assert name == derive_study_name(
        "smallest", ["trainer.epochs=20", "hparams_search=smallest"], space
    )
    assert name != derive_study_name(
        "smallest", ["hparams_search=smallest", "trainer.epochs=10"], space
    )
    assert name != derive_study_name(
        "smallest", ["hparams_search=smallest", "trainer.epochs=20"], {}
    )


@pytest.mark.slow
def test_pruned_trial_is_pruned_in_the_study_and_its_run_folder(tmp_path):
    # A threshold of 0 points of error prunes every trial after its first epoch.
    run_sweep(
        tmp_path,
        "trainer.epochs=3",
        "hydra.sweeper.n_trials=2",
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.upper=0.0",
        "hydra.sweeper.pruner.n_warmup_steps=1",
    )
    trials = _study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.PRUNED]
    for trial in trials:
        metrics = RunRecord.load(tmp_path / TrialResult.of(trial).run_dir)
        assert metrics.status is RunStatus.PRUNED
        assert len(metrics.epochs) == 1 == len(trial.intermediate_values)
    winner = json.loads((sweep_folder(tmp_path) / "winner.json").read_text())
    assert winner["params"] is None


def mid_sweep(cwd: Path) -> bool:
    """One trial finished and the next mid-training: an epoch reported, two still to go."""
    trials = _study(cwd).trials
    running = [
        t for t in trials if t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= 2
    ]
    return bool(running) and any(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_requested_number_of_trials(tmp_path):
    args = [
        *SWEEP,
        "data.train_subset=1000",
        "trainer.epochs=4",
        "hydra.sweeper.n_trials=2",
        "hydra/sweeper/pruner=none",
    ]
    first = start_cli(*args, cwd=tmp_path)

    try:
        wait_until(
            lambda: mid_sweep(tmp_path),
            "a finished trial plus a running one",
            alive=lambda: first.poll() is None,
        )
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    before = {t.number: t.value for t in _study(tmp_path).trials if t.state == TrialState.COMPLETE}
    (interrupted,) = [t for t in _study(tmp_path).trials if t.state == TrialState.RUNNING]

    run_in_process(tmp_path, *args)  # the same command again (the kill was the process's)
    trials = _study(tmp_path).trials
    assert sum(t.state in FINISHED for t in trials) == 2
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert {t.number: t.value for t in trials if t.number in before} == before  # nothing lost
    failed = trials[interrupted.number]
    assert failed.state == TrialState.FAIL
    assert "interrupted" in TrialResult.of(failed).fail_reason
    # Only its own process writes a run's metrics.json: killed, it says "running" for good,
    # and the reason is the study's, which compare shows beside it.
    run_dir = tmp_path / TrialResult.of(failed).run_dir
    metrics = RunRecord.load(run_dir)
    assert metrics.status is RunStatus.RUNNING and 1 <= len(metrics.epochs) < 4
    (row,) = sort_and_filter([load_run(run_dir)])
    assert row.verdict == FAILED
    assert row.reason == TrialResult.of(failed).fail_reason


@pytest.mark.slow
def test_joblib_parallel_sweep_records_every_trial_once(tmp_path):
    run_sweep(
        tmp_path,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    trials = _study(tmp_path).trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert all(t.state in FINISHED for t in trials)
    run_dirs = {TrialResult.of(t).run_dir for t in trials}
    assert len(run_dirs) == 3
    for run_dir in run_dirs:
        metrics = RunRecord.load(tmp_path / run_dir)
        assert metrics.status in (RunStatus.COMPLETED, RunStatus.PRUNED)
    assert sorted(p.name for p in sweep_folder(tmp_path).glob("trial_*")) == [
        "trial_000",
        "trial_001",
        "trial_002",
    ]
    throughput = json.loads((sweep_folder(tmp_path) / "throughput.json").read_text())
    assert (throughput["workers"], throughput["trials"]) == (2, 3)


@pytest.mark.slow
def test_a_verdicts_seeds_use_the_workers_that_have_no_trial_left(tmp_path, capsys):
    # One trial for two workers: once the study has it, the idle worker trains its seeds too.
    run_sweep(
        tmp_path,
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.seeds=3",
        "hydra.sweeper.seed_margin=100",
        "hydra/sweeper/pruner=none",
        "trainer.seed=4",
        "target_acc=1",
    )
    (trial,) = _study(tmp_path).trials
    assert TrialResult.of(trial).seeds == [4, 5, 6] and TrialResult.of(trial).holds
    assert "training seed 5, 6" in "".join(capsys.readouterr())


@pytest.mark.slow
def test_sweep_without_storage_uses_a_throwaway_database(tmp_path):
    run_sweep(tmp_path, "hydra.sweeper.n_trials=1", "hydra.sweeper.storage=null")
    assert not (tmp_path / "outputs" / "optuna.db").exists()
    (sweep_dir,) = (tmp_path / "outputs" / "sweeps").iterdir()
    winner = json.loads((sweep_dir / "winner.json").read_text())
    assert sum(winner["trials"].values()) == 1


@pytest.mark.slow
def test_a_command_line_sweep_of_a_key_the_preset_fixes_is_what_the_trials_run(tmp_path, lean):
    # hparams_search=smallest fixes trainer.epochs: 15; the command line sweeps it.
    sweep = [a for a in SWEEP if not a.startswith("trainer.epochs=")]
    run_in_process(tmp_path, *sweep, "trainer.epochs=choice(1,2)", "hydra.sweeper.n_trials=2")
    for trial in _study(tmp_path).trials:
        epochs = trial.params["trainer.epochs"]
        assert epochs in (1, 2)
        run_dir = tmp_path / trial.user_attrs["run_dir"]
        assert f"trainer.epochs={epochs}" in record.load_overrides(run_dir)
        assert RunRecord.load(run_dir).epochs_planned == epochs


@pytest.mark.slow
def test_failing_trials_are_recorded_and_the_sweep_goes_on(tmp_path, lean):
    sweep = [a for a in SWEEP if not a.startswith("optimizer.lr=")]  # lr becomes a dimension
    # Starting trials make the order certain: one that diverges, then three that do not.
    queue = ", ".join(
        f"{{optimizer.lr: {lr}, model.w1: {w}}}"
        for lr, w in [(1e30, 3), (0.1, 3), (0.1, 4), (0.1, 5)]
    )
    run_in_process(
        tmp_path,
        *sweep,
        "optimizer.lr=choice(1e30,0.1)",
        "dropout.p=0",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.max_failure_rate=1.0",
        f"hydra.sweeper.enqueue=[{queue}]",
    )
    trials = [t for t in _study(tmp_path).trials if t.state != TrialState.WAITING]
    assert sum(t.state in FINISHED for t in trials) == 3
    assert [t.state for t in trials].count(TrialState.FAIL) == 1
    for trial in trials:
        diverging = trial.params["optimizer.lr"] == 1e30
        assert (trial.state == TrialState.FAIL) == diverging
        if diverging:
            assert "diverged" in TrialResult.of(trial).fail_reason
            metrics = RunRecord.load(tmp_path / TrialResult.of(trial).run_dir)
            assert metrics.status is RunStatus.FAILED and "diverged" in metrics.error


@pytest.mark.slow
def test_too_many_failures_stop_the_sweep_with_one_line(tmp_path, capsys):
    run_sweep(tmp_path, "optimizer.lr=1e30", "dropout.p=0", "hydra.sweeper.n_trials=4", code=1)
    assert "error: stopping the sweep: 2 of 2 trials failed" in capsys.readouterr().err
    assert [t.state for t in _study(tmp_path).trials] == [TrialState.FAIL, TrialState.FAIL]
    assert (sweep_folder(tmp_path) / "winner.json").is_file()


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_and_says_how_to_continue(tmp_path):
    # More trials than the test waits for: should Ctrl-C land after the trial it
    # saw mid-way has ended, the sweep is still running the next one.
    args = ["data.train_subset=1000", "trainer.epochs=4", "hydra.sweeper.n_trials=6"]
    run = start_cli(*SWEEP, *args, "hydra/sweeper/pruner=none", cwd=tmp_path)
    try:
        wait_until(lambda: mid_sweep(tmp_path), "a trial mid-way", alive=lambda: run.poll() is None)
    finally:
        os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130
    assert "Traceback" not in err
    assert "re-run the same command to continue" in err
    trials = _study(tmp_path).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    (stopped,) = [t for t in trials if t.state == TrialState.FAIL]
    assert TrialResult.of(stopped).fail_reason == "interrupted by SIGINT"
    assert any(t.state == TrialState.COMPLETE for t in trials)
    metrics = RunRecord.load(tmp_path / TrialResult.of(stopped).run_dir)
    # Written by the trial's own process, which kept its last epoch's checkpoint.
    assert metrics.status is RunStatus.INTERRUPTED and metrics.signal == "SIGINT"
    assert record.load_checkpoint(tmp_path / TrialResult.of(stopped).run_dir).epoch >= 1
    assert (sweep_folder(tmp_path) / "winner.json").is_file()  # the report
    # SIGTERM takes the same path once it is raised (errors.sigterm_interrupts): a run
    # (test_cli) and a two-worker sweep get it in the tests below.


def _training(cwd: Path, n: int = 1) -> bool:
    """At least `n` trials mid-training: an epoch reported, many still to go."""
    trials = _study(cwd).trials
    return sum(t.state == TrialState.RUNNING and bool(t.intermediate_values) for t in trials) >= n


def _interrupted_by_sigterm(cwd: Path, trial) -> bool:
    metrics = RunRecord.load(cwd / TrialResult.of(trial).run_dir)
    return metrics.status is RunStatus.INTERRUPTED and metrics.signal == "SIGTERM"


# Trials long enough that both workers are mid-training at once, however late the
# second one starts on a loaded machine (with short ones, the first could finish the
# sweep alone): 200 epochs of 500 images. SIGTERM ends them, so their length costs nothing.
LONG_TRIALS = ["trainer.epochs=200", "hydra.sweeper.n_trials=4", "hydra/sweeper/pruner=none"]


@pytest.mark.slow
def test_sigterm_ends_a_two_worker_sweep_and_its_workers_record_it(tmp_path):
    two = ["hydra.sweeper.n_jobs=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    run = start_cli(*SWEEP, *LONG_TRIALS, *two, cwd=tmp_path)
    try:
        try:
            mid_way = functools.partial(_training, tmp_path, 2)
            wait_until(mid_way, "two trials mid-way", alive=lambda: run.poll() is None)
        finally:
            run.send_signal(signal.SIGTERM)  # the sweep's process only: it stops its workers
        _, err = run.communicate(timeout=60)
        assert run.returncode == 143
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1] == (
            "interrupted by SIGTERM: finished results are kept; re-run the same command to continue"
        )
        trials = _study(tmp_path).trials
        stopped = [t for t in trials if t.state == TrialState.FAIL]
        assert len(stopped) == 2 and not [t for t in trials if t.state == TrialState.RUNNING]
        assert {TrialResult.of(t).fail_reason for t in stopped} == {"interrupted by SIGTERM"}
        assert (sweep_folder(tmp_path) / "winner.json").is_file()
        # Each worker process records its own run's end, just after the sweep has gone.
        for trial in stopped:
            recorded = functools.partial(_interrupted_by_sigterm, tmp_path, trial)
            wait_until(recorded, f"trial {trial.number}'s record", alive=lambda: True, timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # no worker outlives the test


@pytest.mark.slow
def test_ctrl_c_stops_a_two_worker_sweep_without_waiting_for_its_jobs(tmp_path):
    # Trials of 200 epochs: what a running one has left takes minutes, not the 60 s given.
    args = [
        "trainer.epochs=200",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    ]
    run = start_cli(*SWEEP, *args, "hydra/sweeper/pruner=none", cwd=tmp_path)
    try:
        wait_until(lambda: _training(tmp_path), "a trial mid-way", alive=lambda: run.poll() is None)
    finally:
        os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130
    assert "Traceback" not in err and "re-run the same command to continue" in err
    trials = _study(tmp_path).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped and all(TrialResult.of(t).fail_reason.startswith("interrupted") for t in stopped)
    assert (sweep_folder(tmp_path) / "winner.json").is_file()


@pytest.mark.slow
def test_enqueued_trials_come_first_and_promote_carries_the_screen_forward(tmp_path, lean):
    # Stage 1: the screen preset, shrunk; its first trials are its enqueued designs.
    screen = [
        "-m",
        "hparams_search=screen",
        "data.train_subset=300",
        "trainer.epochs=1",
        "data.augment.strength=0",
        "trainer.device=cpu",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.study_name=stage1",
        "target_acc=15",
    ]
    run_in_process(tmp_path, *screen)
    queued = OmegaConf.load(REPO / "conf" / "hparams_search" / "screen.yaml").hydra.sweeper.enqueue
    storage = f"sqlite:///{tmp_path}/outputs/optuna.db"
    stage1 = optuna.load_study(study_name="stage1", storage=storage)
    ran = stage1.get_trials(states=FINISHED)
    assert len(ran) == 2
    for trial, point in zip(ran, queued, strict=False):
        # data.augment.strength, fixed on the command line, keeps that value.
        assert trial.params == {k: v for k, v in point.items() if k != "data.augment.strength"}
    # Stage 2 starts from stage 1's best design.
    run_sweep(
        tmp_path,
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.study_name=stage2",
        "hydra.sweeper.promote.study=stage1",
        "hydra.sweeper.promote.top=1",
        "model.n1=range(1,4)",
        "model.n2=range(1,4)",
        "model.n3=range(1,4)",
        "model.w1=range(2,9)",
        "model.w2=range(2,13)",
        "model.w3=range(2,17)",
    )
    stage2 = optuna.load_study(study_name="stage2", storage=storage)
    best = min(ran, key=lambda t: (TrialResult.of(t).selection_acc < 15, t.value, t.number))
    shared = {k: v for k, v in best.params.items() if k in stage2.trials[0].params}
    assert shared and stage2.trials[0].params == {**stage2.trials[0].params, **shared}


@pytest.mark.slow
def test_enqueued_keys_outside_the_space_get_one_line(tmp_path, capsys):
    args = ["hydra.sweeper.n_trials=1", "hydra.sweeper.promote.study=no_such_study"]
    err = error_in_process(capsys, tmp_path, *SWEEP, *args)
    assert "no_such_study" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_bad_swept_value_stops_the_sweep_before_its_first_trial(tmp_path, capsys):
    err = error_in_process(capsys, tmp_path, *SWEEP, "optimizer.momentum=choice(0.9,-1)")
    (line,) = err.strip().splitlines()
    assert line.startswith("error: swept value optimizer.momentum=-1: optimizer.momentum=-1"), line
    assert "hparams_search preset" in line
    trials = list((tmp_path / "outputs" / "sweeps").rglob("trial_*"))
    assert trials == [], trials  # no trial was launched


def test_promotion_takes_target_meeters_then_the_front_each_design_once():

    from mnist_sweep.search.starting_points import promoted

    def trial(number: int, params: int, acc: float, w: int) -> optuna.trial.FrozenTrial:
        t = create_trial(
            value=params,
            params={"model.w1": w},
            distributions={"model.w1": IntDistribution(1, 99)},
            user_attrs=TrialResult(selection_acc=acc).attrs(),
        )
        t.number = number
        return t

    trials = [
        trial(0, 3400, 99.02, 1),  # front, most accurate of the rest
        trial(1, 3969, 99.23, 2),  # met the target
        trial(2, 3969, 99.23, 2),  # the same design again
        trial(3, 3500, 99.25, 3),  # met the target, smaller
        trial(4, 2500, 98.90, 4),  # front
        trial(5, 2600, 98.80, 5),  # dominated by trial 4
    ]
    assert [t.number for t in promoted(trials, top=4, target=99.2)] == [3, 1, 0, 4]
    assert [t.number for t in promoted(trials, top=2, target=99.2)] == [3, 1]


# Each stock sampler with the search preset, which must not impose TPE's keys on the
# others: built and bound as the sweeper builds it, it searches the preset's space
# through the sweeper's own trial configuration (in process, no training; the real
# sweeps above run TPE end to end). The model-based samplers are told to start
# modelling at the second trial, so that their own code runs, not only their random
# start.
SAMPLERS = {
    "tpe": ("TPESampler", ["hydra.sweeper.sampler.n_startup_trials=1"]),
    "random": ("RandomSampler", []),
    "gp": ("GPSampler", ["hydra.sweeper.sampler.n_startup_trials=1"]),
    "cmaes": ("CmaEsSampler", ["hydra.sweeper.sampler.n_startup_trials=1"]),
    "nsgaii": ("create_nsgaii_sampler", ["hydra.sweeper.sampler.population_size=2"]),
    "qmc": ("QMCSampler", []),
    # A grid needs a discrete space: the preset's intervals get fixed values.
    "grid": (
        "GridSampler",
        [
            "model.w1=choice(2,4)",
            "model.w2=choice(4)",
            "model.w3=choice(4)",
            "dropout.p=0",
            "optimizer.weight_decay=1e-4",
            "scheduler.pct_start=0.3",
            "trainer.label_smoothing=0",
        ],
    ),
}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_stock_sampler_searches_the_presets_space(sampler):
    target, extra = SAMPLERS[sampler]
    swept = {arg.partition("=")[0] for arg in extra}
    args = [a for a in SWEEP[1:] if a.partition("=")[0] not in swept] + extra
    job = [a for a in args if "(" not in a]  # the sweep's own overrides, at no sweep value
    cfg = compose_config([*job, f"hydra/sweeper/sampler={sampler}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.sampler._target_.endswith(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sweeper = instantiate(cfg.hydra.sweeper, _recursive_=False)  # as Hydra builds it
    command_line = [a for a in args if not a.startswith("hydra")]
    space, fixed, deleted = parse_space(sweeper._parse_sweeper_params_config(), command_line)
    bound, n_trials = bind_grid(sweeper.sampler, space, 3)
    study = optuna.create_study(sampler=bound, directions=Goal.SMALLEST.directions)
    jobs = []

    def objective(trial: optuna.Trial) -> float:
        (overrides,) = sweeper._configure_trials([trial], space, fixed, deleted)
        jobs.append(overrides)
        width = trial.params["model.w1"]
        trial.set_constraint("accuracy", 3 - width)  # the wider designs "hold"
        return float(width)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.optimize(objective, n_trials=n_trials)
    assert n_trials == (2 if sampler == "grid" else 3)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == n_trials
    for overrides, trial in zip(jobs, study.trials, strict=True):
        assert "trainer.epochs=2" in overrides  # the command line's, not the preset's 15
        assert set(space) <= {o.partition("=")[0] for o in overrides}
        assert 2 <= trial.params["model.w1"] <= 6
    if sampler == "grid":  # two different points of the grid
        assert {t.params["model.w1"] for t in study.trials} == {2, 4}


@pytest.mark.slow
def test_sigterm_to_a_plain_multirun_reaches_its_joblib_workers(tmp_path):
    # Started from a script (not a process group's leader), as `timeout` or a batch
    # system would: the workers still record their runs interrupted, not running.
    args = [
        "-m",
        "model=tiny",
        "data.train_subset=500",
        "trainer.epochs=20",
        "trainer.device=cpu",
        "trainer.progress=false",
        "trainer.seed=1,2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweep.dir=multi",
    ]
    run = subprocess.Popen(
        [*CLI, *args],
        cwd=tmp_path,
        env=cli_env(),
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        runs = [tmp_path / "multi" / str(i) for i in (0, 1)]

        def mid_way() -> bool:
            return all((d / record.METRICS).is_file() and RunRecord.load(d).epochs for d in runs)

        try:
            wait_until(mid_way, "both runs mid-way", alive=lambda: run.poll() is None)
        finally:
            run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
        assert run.returncode == 143 and "Traceback" not in err
        for d in runs:
            metrics = RunRecord.load(d)
            assert metrics.status is RunStatus.INTERRUPTED and metrics.signal == "SIGTERM"
    finally:
        run.kill()
