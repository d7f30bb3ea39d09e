"""What the workers sharing a study need beyond Optuna's own loop: trials whose worker
died on this machine failed at once (Optuna's heartbeat fails those of any machine, after
its grace period), their retries, and the sweep's failure budget."""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import sys
from typing import NoReturn

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from mnist_sweep.run.record import process_alive
from mnist_sweep.schema.sweeper import Sweeper
from mnist_sweep.search.objective import worker_id

log = logging.getLogger(__name__)


def retry_callback(retry_failed: int) -> RetryHeartbeatStaleTrialCallback | None:
    """Optuna's callback that queues a dead worker's trial again, up to `retry_failed` times."""
    return RetryHeartbeatStaleTrialCallback(max_retry=retry_failed) if retry_failed else None


def _dead_here(trial: FrozenTrial) -> bool:
    host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))


def fail_running(study: optuna.Study, number: int, reason: str) -> bool:
    """Record a RUNNING trial as failed, with its reason; False if it had finished."""
    trial = study.get_trials(deepcopy=False)[number]
    try:
        # A trial of another thread or process: the public API reaches it only by id.
        Trial(study, trial._trial_id).set_user_attr("fail_reason", reason)
        study.tell(number, state=TrialState.FAIL)
    except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False
    return True


def exit_abandoning_jobs(code: int, message: str) -> NoReturn:
    """Leave an interrupted multi-worker sweep at once. Its jobs run in joblib's worker
    processes, which ignore Ctrl-C and which Optuna's thread pool would wait for: in
    the process group this sweep leads (a terminal's), they are stopped with it."""
    print(message, file=sys.stderr, flush=True)
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
        t.user_attrs.get("worker") != me
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
        if str(trial.user_attrs.get("fail_reason", "")).startswith("surplus"):
            return
        self.told += 1
        self.failures += trial.state == TrialState.FAIL
        if self.spent:
            study.stop()
