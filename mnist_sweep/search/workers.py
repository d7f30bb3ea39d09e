"""The sweep's workers around Optuna's own loop: `optimize` runs `study.optimize` until the
study has its trials and keeps watch while other workers' trials may still be owed again;
trials whose worker died on this machine are failed at once (Optuna's heartbeat fails
those of any machine, after its grace period) and retried; the failure budget; and
throughput.json, from the trials' own timestamps."""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from mnist_sweep.errors import stop_child_processes
from mnist_sweep.run import record
from mnist_sweep.run.record import process_alive
from mnist_sweep.schema.sweeper import Sweeper
from mnist_sweep.search.objective import FINISHED, TrialFailed, TrialJobs, taken, worker_id
from mnist_sweep.search.trial_result import TrialResult

log = logging.getLogger(__name__)


def retry_callback(retry_failed: int) -> RetryHeartbeatStaleTrialCallback | None:
    """Optuna's callback that queues a dead worker's trial again, up to `retry_failed` times."""
    return RetryHeartbeatStaleTrialCallback(max_retry=retry_failed) if retry_failed else None


def _dead_here(trial: FrozenTrial) -> bool:
    host, _, pid = str(TrialResult.of(trial).worker or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))


def fail_running(study: optuna.Study, number: int, reason: str, tell: bool = True) -> bool:
    """Record a RUNNING trial's fail reason and (`tell`) tell it failed; False if it had
    finished."""
    trial = study.get_trials(deepcopy=False)[number]
    try:
        # A trial of another thread or process: the public API reaches it only by id.
        TrialResult(fail_reason=reason).save(Trial(study, trial._trial_id))
        if tell:
            study.tell(number, state=TrialState.FAIL)
    except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False
    return True


def exit_abandoning_jobs(code: int, message: str) -> NoReturn:
    """Leave an interrupted multi-worker sweep at once. Its jobs run in joblib's worker
    processes, which ignore Ctrl-C and which Optuna's thread pool would wait for: in
    the process group this sweep leads (a terminal's), they are stopped with it."""
    print(message, file=sys.stderr, flush=True)
    stop_child_processes(grace=0)  # each records its run, wherever the sweep was started
    if os.getpgrp() == os.getpid():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(os.getpgrp(), signal.SIGTERM)
    os._exit(code)


def fail_orphans(study: optuna.Study, retry_failed: int) -> None:
    """Fail, with their reason, the RUNNING trials whose worker process on this machine is
    gone (they need not wait out the heartbeat's grace period), and queue their retries;
    then let Optuna fail the trials whose worker on any machine stopped its heartbeat."""
    reason = "interrupted: the sweep process died"
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _dead_here(trial) or not fail_running(study, trial.number, reason):
            continue
        log.warning("trial %d %s: marked failed", trial.number, reason)
        callback = retry_callback(retry_failed)
        if callback is not None:
            lost = copy.deepcopy(trial)
            lost.user_attrs = {}  # the retry is a run of its own: no inherited folder or reason
            callback(study, lost)
    optuna.storages.fail_stale_trials(study)


def others_running(study: optuna.Study) -> bool:
    """Whether another worker's trial is still running (and may fail and be owed again)."""
    me = worker_id()
    return any(
        TrialResult.of(t).worker != me
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    )


class FailureBudget:
    """A study.optimize callback: stop once more than max_failure_rate * n_trials of this
    sweep's trials have failed (a surplus trial, never launched, does not count)."""

    def __init__(self, settings: Sweeper) -> None:
        self.allowed = settings.max_failure_rate * settings.n_trials
        self.failures = self.told = 0

    @property
    def spent(self) -> bool:
        return self.failures > self.allowed

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if str(TrialResult.of(trial).fail_reason).startswith("surplus"):
            return
        self.told += 1
        self.failures += trial.state == TrialState.FAIL
        if self.spent:
            study.stop()


def optimize(study: optuna.Study, jobs: TrialJobs) -> FailureBudget:
    """Run the study's owed trials with the sweep's workers until it has n_trials finished
    ones, the timeout passes or too many failed; while other workers' trials may still
    fail and be owed again, keep watch. Returns the failure budget, spent or not."""
    settings = jobs.settings
    budget = FailureBudget(settings)
    while not budget.spent:
        fail_orphans(study, settings.retry_failed)
        owed = settings.n_trials - len(taken(study))
        left = jobs.time_left()
        if left is not None and left <= 0:
            log.info("timeout: %.0f s passed; no new trial starts", settings.timeout)
            break
        if owed > 0:
            _optimize_interruptibly(
                study,
                jobs,
                n_trials=owed,
                n_jobs=jobs.place.workers,
                timeout=left,
                catch=(TrialFailed,),
                callbacks=[MaxTrialsCallback(settings.n_trials, states=FINISHED), budget],
            )
            continue
        if not others_running(study):
            break
        time.sleep(min(settings.heartbeat_interval, 5))
    return budget


def _optimize_interruptibly(study: optuna.Study, objective: TrialJobs, **kwargs: Any) -> None:
    """study.optimize, where Ctrl-C ends it at once.

    One worker runs in this thread, where Ctrl-C lands inside the job (the basic
    launcher trains in this process). Several run in Optuna's thread pool, which would
    wait for every running job at Ctrl-C; there the pool runs from a daemon thread and
    this one only waits, so that Ctrl-C reaches the sweep at once.
    """
    if kwargs.get("n_jobs", 1) == 1:
        study.optimize(objective, **kwargs)
        return
    failed: list[BaseException] = []

    def run() -> None:
        try:
            study.optimize(objective, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the sweep's thread
            failed.append(e)

    pool = threading.Thread(target=run, daemon=True)
    pool.start()
    while pool.is_alive():
        pool.join(0.5)
    if failed:
        raise failed[0]


def write_throughput(
    study: optuna.Study, path: Path, since: datetime, n_workers: int, launcher: str
) -> None:
    """How busy the sweep kept its workers, from the trials this process ran since `since`
    and their own timestamps: trial seconds over workers x the sweep's wall time. (A
    trial whose seeds ran side by side on idle workers counts its seconds once.)"""
    ran = [
        (t.duration.total_seconds(), r)
        for t in study.get_trials(deepcopy=False)
        if t.duration is not None
        and t.datetime_start >= since  # type: ignore[operator]
        and (r := TrialResult.of(t)).worker == worker_id()
    ]
    wall = (datetime.now() - since).total_seconds()
    busy, trials, runs = sum(s for s, _ in ran), len(ran), sum(r.runs for _, r in ran)
    record.write_json(
        path,
        {
            "launcher": launcher,
            "workers": n_workers,
            "trials": trials,
            "runs": runs,
            "wall_seconds": round(wall, 3),
            "trial_seconds": round(busy, 3),
            "utilisation": round(busy / (n_workers * wall), 4) if wall else None,
            "trials_per_hour": round(trials * 3600 / wall, 2) if wall else None,
            "runs_per_hour": round(runs * 3600 / wall, 2) if wall else None,
        },
    )
