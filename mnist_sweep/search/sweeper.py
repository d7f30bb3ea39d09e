"""Optuna sweeper for "the smallest net that still reaches the target accuracy".

A subclass of hydra-optuna-sweeper's own implementation that keeps its YAML
surface (sampler, storage, study_name, n_trials, n_jobs, max_failure_rate,
params, custom_search_space) and adds what the stock one lacks:

- the objective: minimise the parameter count, with final-epoch accuracy >=
  target_acc as an Optuna constraint (`Trial.set_constraint`), so the study's
  best trial is always a feasible one;
- asynchronous trials: n_jobs workers each loop ask -> launch one job -> tell on
  the shared study, so a worker whose trial was pruned starts the next one at
  once instead of waiting for its batch; the sweep folder's throughput.json
  says how busy the workers were;
- pruning: each job learns its trial number from the `hydra.job.optuna_trial`
  override, reports its per-epoch error and stops when the pruner says so;
- resume: the study lives in storage (SQLite under outputs/ by default) under a
  name derived from the command, so re-running the command continues it:
  finished trials are kept, trials whose worker died are marked failed (by
  Optuna's heartbeat, or at once for a dead process on this machine) and
  retried with Optuna's RetryHeartbeatStaleTrialCallback, and only the trials
  still owed are run;
- a space checked before the first trial (search/space.py): a swept value the
  schema refuses ends the sweep with one line instead of failing every trial;
- failures: a failing trial is recorded FAIL with its reason and the sweep goes
  on, until more than max_failure_rate * n_trials trials have failed;
- the report (winner.json, Pareto front) in the sweep folder.

Registered with Hydra through the `hydra.plugins` entry point in pyproject.toml.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from optuna.storages import RetryHeartbeatStaleTrialCallback

# The heartbeat thread Optuna's own study.optimize runs beside every trial, and
# the stale-trial check its fail_stale_trials makes.
from optuna.storages._heartbeat import BaseHeartbeat, get_heartbeat_thread, is_heartbeat_enabled
from optuna.trial import FrozenTrial, Trial, TrialState

from mnist_sweep.errors import ConfigError
from mnist_sweep.run import record
from mnist_sweep.schema.sweeper import validate_sweeper
from mnist_sweep.search import report
from mnist_sweep.search.pruning import (
    accuracy_of,
    build_pruner,
    selection_accuracy,
    selection_split,
)
from mnist_sweep.search.samplers import bind_grid
from mnist_sweep.search.space import check_space
from mnist_sweep.search.storage import display_url, open_storage, user_error

log = logging.getLogger(__name__)

SAMPLER_TARGETS = ["hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
THROUGHPUT = "throughput.json"


def derive_study_name(prefix: str, task_overrides: Sequence[str], params: Any) -> str:
    """Same command, same name: a hash of the command-line overrides and the search space.

    Sweeper settings (n_trials, storage, seed) are not part of it, so a re-run
    asking for more trials continues the same study.
    """
    search_space = {str(k): str(v) for k, v in (params or {}).items()}
    text = json.dumps({"overrides": sorted(task_overrides), "params": search_space}, sort_keys=True)
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def promoted(trials: Sequence[FrozenTrial], top: int) -> list[FrozenTrial]:
    """The designs of a screening study worth training in full, best first.

    Those that met their target, fewest parameters first; then, while fewer
    than `top`, the rest of the (params, accuracy) Pareto front, most accurate
    first: the screen's target is a guess at what the short schedule can show.
    """
    acc = {t.number: t.user_attrs.get("selection_acc", -1.0) for t in trials}
    met = [t for t in trials if acc[t.number] >= t.user_attrs.get("target_acc", 101.0)]
    met.sort(key=lambda t: (t.value, -acc[t.number]))
    front = [
        t
        for t in trials
        if t not in met
        and not any(
            o.value <= t.value
            and acc[o.number] >= acc[t.number]
            and (o.value < t.value or acc[o.number] > acc[t.number])
            for o in trials
        )
    ]
    front.sort(key=lambda t: -acc[t.number])
    unique: dict[str, FrozenTrial] = {}
    for t in met + front:  # the same design tried twice is promoted once
        unique.setdefault(json.dumps(t.params, sort_keys=True, default=str), t)
    return list(unique.values())[:top]


def _busy_seconds(run_dir: str | None, launched: float, returned: float) -> float:
    """How long a job held its worker: from its launch to its run's last act (the last
    file it wrote), not counting a wait for other jobs launched with it."""
    try:
        ended = max(p.stat().st_mtime for p in Path(run_dir).iterdir())  # type: ignore[arg-type]
    except (OSError, TypeError, ValueError):  # no folder, or an empty one
        ended = returned
    return min(max(ended - launched, 0.0), returned - launched)


def _plain(value: Any) -> Any:
    """A sweeper setting as plain Python (Hydra hands lists and mappings over as configs)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class SmallestNetSweeper(OptunaSweeperImpl):
    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        custom_search_space: str | None,
        params: DictConfig | None,
        pruner: Any = None,
        confirm_seeds: int = 0,
        heartbeat_interval: int = 30,
        grace_period: int = 120,
        retry_failed: int = 0,
        enqueue: Any = None,
        promote: Any = None,
        _blocking_batches: bool = False,
    ) -> None:
        if str(direction) != "minimize":
            user_error(
                "this sweeper minimises the parameter count under an accuracy constraint; "
                f"hydra.sweeper.direction must be 'minimize', got {direction!r}"
            )
        try:
            validate_sweeper(
                {
                    "storage": storage, "study_name": study_name, "n_trials": n_trials,
                    "n_jobs": n_jobs, "max_failure_rate": max_failure_rate,
                    "confirm_seeds": confirm_seeds, "heartbeat_interval": heartbeat_interval,
                    "grace_period": grace_period, "retry_failed": retry_failed,
                    "enqueue": _plain(enqueue) or [], "promote": _plain(promote),
                }
            )  # fmt: skip
        except ConfigError as e:
            user_error(str(e))
        super().__init__(
            instantiate(sampler, _execution_whitelist_=SAMPLER_TARGETS),
            direction,
            storage,
            study_name,
            n_trials,
            n_jobs,
            max_failure_rate,
            custom_search_space,
            params,
        )
        self.pruner_cfg = pruner
        self.confirm_seeds = confirm_seeds
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.retry_failed = retry_failed
        self.enqueue = list(enqueue or [])
        self.promote = promote
        self._rdb: optuna.storages.RDBStorage | None = None
        self._reseeded = False
        # The scheduler before issue #11 (launch n_jobs, wait for all of them), kept
        # only so that `python -m mnist_sweep.bench --sweep-utilisation` can compare.
        self._blocking_batches = _blocking_batches
        # What the workers of this process share, guarded by one lock: a
        # Condition, so that a worker waiting for the study's last trials wakes
        # as soon as a sibling's trial ends.
        self._lock = threading.Condition()
        self._in_flight: dict[int, Trial] = {}
        self._stopping = self._interrupted = False
        self._told = self._failures = 0
        self._trial_seconds = 0.0
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        if not self.study_name:
            prefix = config.hydra.runtime.choices.get("hparams_search") or "sweep"
            name = derive_study_name(prefix, list(config.hydra.overrides.task), self.params)
            self.study_name = self._settle(config, "study_name", name)
        if not self.storage:
            # No storage named: a throwaway database that the jobs reach by URL like any other.
            self._scratch = tempfile.TemporaryDirectory(prefix="mnist-sweep-")
            self.storage = self._settle(
                config, "storage", f"sqlite:///{self._scratch.name}/optuna.db"
            )
        self.task_function = task_function
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    @staticmethod
    def _settle(config: DictConfig, key: str, value: str) -> str:
        """Fix a sweeper setting for the jobs too: they are composed afresh from
        hydra.overrides.hydra, and their hydra.sweeper must equal the sweep's."""
        sweeper_cfg, hydra_overrides = config.hydra.sweeper, config.hydra.overrides.hydra
        with read_write(sweeper_cfg), open_dict(sweeper_cfg), read_write(hydra_overrides):
            sweeper_cfg[key] = value
            hydra_overrides.append(f"hydra.sweeper.{key}={value}")
        return value

    # -- storage and study -------------------------------------------------

    def _open_study(self) -> optuna.Study:
        # Heartbeats and the retry callback are "experimental" in Optuna; this
        # sweeper relies on them knowingly...
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # ...and uses heartbeats with ask/tell, which Optuna warns is not their usual use.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(str(self.storage), self.heartbeat_interval, self.grace_period),
            sampler=self.sampler,
            direction="minimize",
            pruner=build_pruner(self.pruner_cfg),
            load_if_exists=True,
        )

    @staticmethod
    def _taken(study: optuna.Study) -> list[FrozenTrial]:
        """Finished trials, and running ones: in a shared study other workers' count too."""
        return study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))

    def _owed(self, study: optuna.Study) -> int:
        return self.n_trials - len(self._taken(study))

    def _fail(self, study: optuna.Study, trial: FrozenTrial | Trial, reason: str) -> bool:
        """Record a RUNNING trial as failed with its reason; False if it had finished meanwhile."""
        try:
            Trial(study, trial._trial_id).set_user_attr("fail_reason", reason)
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
            return False
        return True

    def _retry(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Queue the lost trial's parameters again (up to retry_failed times) for any worker."""
        if len(RetryHeartbeatStaleTrialCallback.retry_history(trial)) >= self.retry_failed:
            return
        lost = copy.deepcopy(trial)
        lost.user_attrs = {}  # the retry is a run of its own: no inherited folder or reason
        RetryHeartbeatStaleTrialCallback(max_retry=self.retry_failed)(study, lost)
        log.info("trial %d will be retried with the same parameters", trial.number)

    def _fail_stale(self, study: optuna.Study) -> None:
        """Fail the trials of any host whose worker sent no heartbeat for grace_period seconds.

        Optuna's own fail_stale_trials would fail them without a reason, and a
        finished trial takes no more attributes: the reason is set first, here.
        """
        storage = study._storage
        if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
            return
        reason = f"interrupted: no heartbeat from its worker for {self.grace_period}s"
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            trial = storage.get_trial(trial_id)
            if self._fail(study, trial, reason):
                log.warning("trial %d %s: marked failed", trial.number, reason)
                self._retry(study, trial)

    def _fail_orphans(self, study: optuna.Study) -> None:
        """Mark as failed (and retry, if configured) the RUNNING trials whose worker is gone."""
        self._fail_stale(study)  # any host: by heartbeat
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # This host's dead workers need not wait for the heartbeat's grace period.
            owner_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
            dead = owner_host == host and pid.isdigit() and not record.process_alive(int(pid))
            if dead and self._fail(study, trial, "interrupted: the sweep process died"):
                log.warning("trial %d was interrupted (its sweep process died)", trial.number)
                self._retry(study, trial)

    def _surplus(self, study: optuna.Study, trial: Trial) -> bool:
        """True when workers racing for the last trials asked for one too many: the
        later trial number yields, so the study never holds more than n_trials."""
        return sum(t.number < trial.number for t in self._taken(study)) >= self.n_trials

    # -- starting points -----------------------------------------------------

    def _starting_points(self, study: optuna.Study) -> list[dict[str, Any]]:
        """`enqueue`'s points, then the smallest feasible designs of the `promote` study."""
        points = [
            dict(OmegaConf.to_container(p) if OmegaConf.is_config(p) else p) for p in self.enqueue
        ]
        if self.promote and self.promote.get("study"):
            name, top = str(self.promote.study), int(self.promote.get("top", 5))
            try:
                earlier = optuna.load_study(study_name=name, storage=study._storage)
            except KeyError:
                user_error(
                    f"hydra.sweeper.promote.study={name} is not in {display_url(self.storage)}; "
                    "name a study of the same storage (outputs/sweeps/<study name>/)"
                )
            done = earlier.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            points += [dict(t.params) for t in promoted(done, top)]
        return points

    def _enqueue_starting_trials(
        self, study: optuna.Study, distributions: dict[str, Any], fixed: dict[str, Any]
    ) -> None:
        """Queue the starting points once: a resumed study does not queue them again.

        A key the command line fixes keeps the command line's value.
        """
        for point in self._starting_points(study):
            unknown = sorted(set(point) - set(distributions) - set(fixed))
            if unknown:
                user_error(
                    f"hydra.sweeper.enqueue/promote names {', '.join(unknown)}, which the search "
                    "space does not sweep; add them to hydra.sweeper.params or drop them"
                )
            swept = {k: v for k, v in point.items() if k in distributions}
            study.enqueue_trial(swept, skip_if_exists=True)

    def _reseed_if_shared(self, study: optuna.Study) -> None:
        """Once another worker's trial is seen, draw from a fresh random stream.

        Workers started with the same sampler seed would otherwise propose the
        same points (every one during a random start-up phase). A lone worker
        keeps its seeded, reproducible sequence.
        """
        if self._reseeded:
            return
        me = f"{socket.gethostname()}:{os.getpid()}"
        workers = {t.user_attrs.get("worker") for t in self._taken(study)} - {None, me}
        if workers:
            self.sampler.reseed_rng()
            self._reseeded = True

    # -- one trial -------------------------------------------------------------

    def _next_trial(
        self, study: optuna.Study, wait: bool = True
    ) -> tuple[Trial, tuple[str, ...], int] | None:
        """The next trial to run, its job's overrides and job index; None once the study
        holds n_trials finished ones (or the sweep is stopping).

        While trials still run, keep watch: if one of them fails or its worker
        dies, a trial is owed again and this worker runs it.
        """
        with self._lock:
            waiting_logged = False
            while not self._stopping:
                self._fail_orphans(study)
                self._reseed_if_shared(study)
                if self._owed(study) > 0:
                    trial = study.ask()
                    if not self._surplus(study, trial):
                        return self._start(study, trial)
                    self._fail(study, trial, "surplus: other workers took the study's last trials")
                running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
                if not running or not wait:
                    return None
                others = running - len(self._in_flight)
                if others > 0 and not waiting_logged:
                    log.info("waiting for the %d trials other workers are running", others)
                    waiting_logged = True
                self._lock.wait(self.heartbeat_interval)
            return None

    def _start(self, study: optuna.Study, trial: Trial) -> tuple[Trial, tuple[str, ...], int]:
        (job,) = self._configure_trials([trial], *self._space)
        subdir = f"trial_{trial.number:03d}"
        trial.set_user_attr("run_dir", str(Path(str(self.config.hydra.sweep.dir)) / subdir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        lost = RetryHeartbeatStaleTrialCallback.retried_trial_number(
            study.get_trials(deepcopy=False)[trial.number]
        )
        if lost is not None:
            trial.set_user_attr("retry_of", lost)
        # The job's one link to its trial: an override in Hydra's own job settings,
        # read by __main__ (and kept in the run's .hydra/hydra.yaml).
        job = (
            *job,
            f"hydra.sweep.subdir={subdir}",
            f"++hydra.job.{record.SWEEP_TRIAL}={trial.number}",
        )
        self._in_flight[trial.number] = trial
        self.job_idx += 1
        return trial, job, self.job_idx - 1

    def _tell(self, study: optuna.Study, trial: Trial, ret: Any) -> bool:
        """Record one job's outcome in the study; False when the trial failed."""
        cfg = getattr(ret, "cfg", None)
        target = float((cfg if cfg is not None else self.config).target_acc)
        trial.set_user_attr("target_acc", target)
        try:
            if isinstance(ret, BaseException):  # the launcher lost the job itself
                raise ret
            result = ret.return_value
        except optuna.TrialPruned as e:
            reported = study.get_trials(deepcopy=False)[trial.number].intermediate_values
            if reported:
                accuracy = accuracy_of(reported[max(reported)])
                trial.set_user_attr("selection_acc", accuracy)
                trial.set_constraint("accuracy", target - accuracy)
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d: %s", trial.number, e)
            return True
        except Exception as e:
            self._fail(study, trial, f"{type(e).__name__}: {e}")
            log.warning("trial %d failed: %s", trial.number, e)
            return False
        accuracy, split = selection_accuracy(result), selection_split(result)
        for key, value in result.items():  # __main__.objective_values
            trial.set_user_attr(key, value)
        trial.set_user_attr("selection", split)
        trial.set_user_attr("selection_acc", accuracy)
        trial.set_constraint("accuracy", target - accuracy)
        study.tell(trial, float(result["params"]))
        log.info(
            "trial %d: %s params, %.2f%% %s accuracy (target %.2f%%: %s)",
            trial.number, f"{result['params']:,}", accuracy, split,
            target, "met" if accuracy >= target else "missed",
        )  # fmt: skip
        return True

    def _record(
        self, study: optuna.Study, trial: Trial, ret: Any, launched: float, returned: float
    ) -> None:
        with self._lock:
            self._in_flight.pop(trial.number, None)
            if self._interrupted:  # Ctrl-C has recorded it already
                return
            self._failures += not self._tell(study, trial, ret)
            self._told += 1
            self._trial_seconds += _busy_seconds(
                trial.user_attrs.get("run_dir"), launched, returned
            )
            if self._failures > self.max_failure_rate * self.n_trials:
                self._stopping = True
            self._lock.notify_all()

    # -- workers -----------------------------------------------------------------

    def _work(self, study: optuna.Study, launcher: Launcher) -> None:
        """One worker: ask -> launch one job -> tell, until the study holds n_trials."""
        while (started := self._next_trial(study)) is not None:
            trial, job, idx = started
            launched = time.time()
            with get_heartbeat_thread(trial._trial_id, study._storage):
                try:
                    (ret,) = launcher.launch([job], initial_job_idx=idx)
                except Exception as e:  # a killed joblib worker, a cancelled SLURM job
                    ret = e
            self._record(study, trial, ret, launched, time.time())

    def _work_in_batches(self, study: optuna.Study, workers: int) -> None:
        """The scheduler before issue #11: launch n_jobs trials, wait for all of them."""
        while (first := self._next_trial(study)) is not None:
            batch = [first]
            while len(batch) < workers and (more := self._next_trial(study, wait=False)):
                batch.append(more)
            launched = time.time()
            with ExitStack() as beating:
                for trial, _, _ in batch:
                    beating.enter_context(get_heartbeat_thread(trial._trial_id, study._storage))
                returns = self.launcher.launch([j for _, j, _ in batch], batch[0][2])
            for (trial, _, _), ret in zip(batch, returns, strict=True):
                self._record(study, trial, ret, launched, time.time())

    def _workers(self) -> int:
        # The basic launcher runs its jobs in this very process, one at a time.
        if type(self.launcher).__name__ == "BasicLauncher" and self.n_jobs > 1:
            log.info("the basic launcher runs one trial at a time; for n_jobs=%d trials at "
                     "once use hydra/launcher=joblib (or submitit)", self.n_jobs)  # fmt: skip
            return 1
        return max(1, self.n_jobs)

    def _run_workers(self, study: optuna.Study, workers: int) -> None:
        if self._blocking_batches:
            return self._work_in_batches(study, workers)
        if workers == 1:  # in this thread, where Ctrl-C lands
            return self._work(study, self.launcher)
        errors: list[BaseException] = []

        def worker(launcher: Launcher) -> None:
            try:
                self._work(study, launcher)
            except BaseException as e:  # noqa: BLE001 - re-raised in the sweep's thread
                with self._lock:
                    errors.append(e)
                    self._stopping = True
                    self._lock.notify_all()

        # A launcher of its own per worker: none of them need be safe to share.
        launchers = [self.launcher] + [
            Plugins.instance().instantiate_launcher(
                config=self.config,
                hydra_context=self.hydra_context,
                task_function=self.task_function,
            )
            for _ in range(workers - 1)
        ]
        # Daemon threads: after Ctrl-C the sweep exits without waiting for their jobs.
        threads = [threading.Thread(target=worker, args=(x,), daemon=True) for x in launchers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    # -- the sweep -----------------------------------------------------------

    def _write_throughput(self, sweep_dir: Path, workers: int, wall: float) -> None:
        """How busy the workers were: trial seconds (the time each job held its worker)
        over workers x the sweep's wall time."""
        throughput = {
            "scheduler": "blocking batches" if self._blocking_batches else "asynchronous",
            "launcher": type(self.launcher).__name__,
            "workers": workers,
            "trials": self._told,
            "wall_seconds": round(wall, 3),
            "trial_seconds": round(self._trial_seconds, 3),
            "utilisation": round(self._trial_seconds / (workers * wall), 4) if wall else None,
            "trials_per_hour": round(self._told * 3600 / wall, 2) if wall else None,
        }
        record.write_json(sweep_dir / THROUGHPUT, throughput)

    def sweep(self, arguments: list[str]) -> None:
        self._process_searchspace_config()
        distributions, fixed_params, fixed_overrides = create_params_from_overrides(
            self._parse_sweeper_params_config() + list(arguments)
        )
        for name in fixed_params:
            distributions.pop(name, None)
        try:
            check_space(self.config, distributions, fixed_params)
        except ConfigError as e:
            user_error(f"{e}; fix it on the command line or in the hparams_search preset")
        self.sampler, self.n_trials = bind_grid(self.sampler, distributions, self.n_trials)
        self._space = (distributions, fixed_params, fixed_overrides)
        study = self._open_study()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        self._enqueue_starting_trials(study, distributions, fixed_params)
        self._fail_orphans(study)
        workers = self._workers()
        kept = len(study.get_trials(deepcopy=False, states=FINISHED))
        log.info(
            "study %s (storage %s): %d finished trials kept, %d to run by %d workers; "
            "sweep folder %s",
            study.study_name, display_url(self.storage), kept, max(self._owed(study), 0),
            workers, sweep_dir,
        )  # fmt: skip
        # A search preset may fix its own target (a screening stage does).
        target = float(fixed_params.get("target_acc", self.config.target_acc))
        started = time.monotonic()
        try:
            self._run_workers(study, workers)
        except KeyboardInterrupt:
            with self._lock:
                self._interrupted = True
                for trial in list(self._in_flight.values()):
                    self._fail(study, trial, "interrupted (Ctrl-C)")
            report.write(study, sweep_dir, target)
            self._write_throughput(sweep_dir, workers, time.monotonic() - started)
            log.error(
                "interrupted: the study keeps every finished trial; "
                "re-run the same command to continue %s",
                study.study_name,
            )
            raise
        self._write_throughput(sweep_dir, workers, time.monotonic() - started)
        winner = report.write(study, sweep_dir, target)
        if self._failures > self.max_failure_rate * self.n_trials:
            user_error(
                f"stopping the sweep: {self._failures} of {self._told} trials failed "
                f"(max_failure_rate={self.max_failure_rate}); their reasons are in the log "
                "above, the study's fail_reason attributes and the run folders"
            )
        if self.confirm_seeds > 0 and winner["params"] is not None:
            from mnist_sweep.search.confirm import confirm

            confirm(sweep_dir, self.confirm_seeds)
