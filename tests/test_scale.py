"""Scaling out: one study shared by several workers on a real PostgreSQL server, dead
workers' trials failed and retried, the submitit launchers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mnist_sweep.compare.runs import load_run
from mnist_sweep.compare.verdict import FAILED, sort_and_filter
from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.search.objective import FINISHED
from mnist_sweep.search.storage import open_storage
from mnist_sweep.search.trial_result import TrialResult
from tests.conftest import (
    SWEEP,
    compose_config,
    error_in_process,
    run_sweep,
    start_cli,
    sweep_folder,
    wait_until,
)

PASSWORD = "s3cret-never-logged"


def _unavailable(reason: str) -> None:
    # CI sets MNIST_SWEEP_REQUIRE_POSTGRES=1: there the database tests must run.
    if os.environ.get("MNIST_SWEEP_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback, created and removed by the tests."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bindirs:
        _unavailable("PostgreSQL server not installed (Debian: apt-get install postgresql)")
    bindir = bindirs[-1].parent
    # The server refuses to run as root; Debian's package provides the postgres user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="mnist-sweep-pg-"))
    if as_user:
        shutil.chown(root, "postgres")
    port = _free_port()
    try:
        subprocess.run(
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                str(root / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        options = f"-k {root} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, OSError) as e:
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"could not start a PostgreSQL server: {e}")
    try:
        # The URL as users type it (SQLAlchemy 2.1 picks the psycopg 3 driver for it).
        # trust auth accepts any password: it is there to prove none is ever written out.
        yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def _workers(cwd: Path, storage: str, n: int, *args: str) -> list[subprocess.Popen]:
    return [start_cli(*SWEEP, *args, cwd=cwd, MNIST_SWEEP_STORAGE=storage) for _ in range(n)]


def _sweep_study(cwd: Path, storage: str) -> optuna.Study:
    """The study of the one sweep run from cwd (its folder is named after it)."""
    sweep_dir = sweep_folder(cwd)
    return optuna.load_study(study_name=sweep_dir.name, storage=storage)


def _check_shared_study(cwd: Path, storage: str, n_trials: int) -> list[optuna.trial.FrozenTrial]:
    """Exactly n_trials finished trials, each run once in its own folder; none left running."""
    trials = _sweep_study(cwd, storage).trials
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == n_trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    run_dirs = [TrialResult.of(t).run_dir for t in finished]
    assert len(set(run_dirs)) == n_trials
    for run_dir in run_dirs:
        status = RunRecord.load(cwd / run_dir).status
        assert status in (RunStatus.COMPLETED, RunStatus.PRUNED)
    return trials


@pytest.mark.slow
def test_psycopg2_urls_keep_working(postgres_url):
    url = postgres_url.replace("postgresql://", "postgresql+psycopg2://")
    storage = open_storage(url, heartbeat_interval=30, grace_period=120, on_stale=print)
    study = optuna.create_study(study_name="psycopg2", storage=storage)
    study.add_trial(optuna.trial.create_trial(value=1.0))
    assert optuna.load_study(study_name="psycopg2", storage=postgres_url).best_value == 1.0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scheme", "says"),
    [
        ("postgresql", "error: cannot reach storage postgresql://optuna:***@127.0.0.1:"),
        ("postgresql+nosuchdriver", "error: cannot open storage postgresql+nosuchdriver://"),
    ],
)
def test_storage_that_cannot_be_opened_is_one_line(tmp_path, capsys, monkeypatch, scheme, says):
    port = _free_port()  # nothing listens there
    monkeypatch.setenv(
        "MNIST_SWEEP_STORAGE", f"{scheme}://optuna:{PASSWORD}@127.0.0.1:{port}/optuna"
    )
    err = error_in_process(capsys, tmp_path, *SWEEP)
    (line,) = err.strip().splitlines()
    assert line.startswith(says), line
    assert PASSWORD not in err + capsys.readouterr().out


@pytest.mark.slow
def test_two_workers_share_a_postgres_study_and_a_killed_ones_trial_is_retried(
    tmp_path, postgres_url
):
    storage = postgres_url
    args = [
        "trainer.epochs=4",
        "data.train_subset=1000",
        "hydra.sweeper.n_trials=4",
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.retry_failed=1",
        "hydra.sweeper.study_name=kill-test",
    ]
    victim, survivor = _workers(tmp_path, storage, 2, *args)

    def victim_mid_second_trial() -> list[optuna.trial.FrozenTrial]:
        mine = [
            t
            for t in optuna.load_study(study_name="kill-test", storage=storage).trials
            if (TrialResult.of(t).worker or "").endswith(f":{victim.pid}")
        ]
        if not any(t.state in FINISHED for t in mine):
            return []  # a finished trial of its own first: the study is shared
        return [
            t
            for t in mine
            if t.state == TrialState.RUNNING and 1 <= len(t.intermediate_values) <= 2
        ]

    try:
        target = wait_until(
            victim_mid_second_trial,
            "the victim half-way through its second trial",
            lambda: victim.poll() is None,
        )
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    (killed,) = target
    _, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err[-3000:]

    trials = _check_shared_study(tmp_path, storage, 4)  # each finished trial run once
    workers = {TrialResult.of(t).worker.rsplit(":", 1)[1] for t in trials if t.state in FINISHED}
    assert workers == {str(victim.pid), str(survivor.pid)}
    dead = trials[killed.number]
    assert dead.state == TrialState.FAIL
    assert TrialResult.of(dead).fail_reason.startswith("interrupted")
    for trial in (t for t in trials if t.state == TrialState.FAIL and t is not dead):
        assert TrialResult.of(trial).fail_reason.startswith("surplus")  # a lost race only
    (retry,) = [t for t in trials if TrialResult.of(t).retry_of == killed.number]
    assert retry.state in FINISHED and retry.params == killed.params
    assert TrialResult.of(retry).worker.endswith(f":{survivor.pid}")
    run_dir = tmp_path / TrialResult.of(dead).run_dir
    assert RunRecord.load(run_dir).status is RunStatus.RUNNING  # only its killed process writes it
    (row,) = sort_and_filter([load_run(run_dir)])
    assert (row.verdict, row.reason) == (FAILED, TrialResult.of(dead).fail_reason)
    winner = json.loads((sweep_folder(tmp_path) / "winner.json").read_text())
    assert winner["trials"]["complete"] + winner["trials"]["pruned"] == 4
    # The password came from the environment and is written nowhere.
    for path in (tmp_path / "outputs").rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".json", ".log", ".csv"):
            assert PASSWORD not in path.read_text(errors="ignore"), path


@pytest.mark.slow
def test_trial_without_heartbeat_is_failed_and_retried(tmp_path):
    """A trial of a worker on another machine that stopped sending heartbeats."""
    storage_url = f"sqlite:///{tmp_path}/outputs/optuna.db"
    (tmp_path / "outputs").mkdir()
    storage = optuna.storages.RDBStorage(storage_url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="remote", storage=storage, direction="minimize")
    lost = study.ask({"model.w1": optuna.distributions.IntDistribution(2, 6)})
    TrialResult(worker="another-machine:4242").save(lost)
    storage.record_heartbeat(lost._trial_id)
    time.sleep(3)  # past the grace period

    run_sweep(
        tmp_path,
        "hydra.sweeper.study_name=remote",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=2",
        "hydra.sweeper.retry_failed=1",
    )
    trials = optuna.load_study(study_name="remote", storage=storage_url).trials
    assert trials[0].state == TrialState.FAIL
    (retry,) = [t for t in trials if TrialResult.of(t).retry_of == 0]
    assert retry.state in FINISHED and retry.params["model.w1"] == lost.params["model.w1"]
    assert sum(t.state in FINISHED for t in trials) == 2


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    # One trial: a job of submitit's own, in a process of its own (the joblib tests cover
    # workers running trials side by side).
    run_sweep(
        tmp_path,
        "hydra.sweeper.n_trials=1",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
    )
    storage = f"sqlite:///{tmp_path}/outputs/optuna.db"
    _check_shared_study(tmp_path, storage, 1)
    (result,) = (sweep_folder(tmp_path) / ".submitit").glob("*/*_result.pkl")  # submitit's job


def test_slurm_launcher_config_exposes_the_settings_users_change():
    cfg = compose_config(
        ["hparams_search=smallest", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
        return_hydra_config=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu"
    assert (launcher.gpus_per_node, launcher.array_parallelism) == (1, 8)
    assert launcher.timeout_min == 60
