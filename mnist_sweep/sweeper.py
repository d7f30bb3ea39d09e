"""Optuna sweeper for "the smallest net that still reaches the target accuracy".

A subclass of hydra-optuna-sweeper's own implementation that keeps its YAML
surface (sampler, storage, study_name, n_trials, n_jobs, max_failure_rate,
params, custom_search_space) and adds what the stock one lacks:

- the objective: minimise the parameter count, with final-epoch accuracy >=
  target_acc as an Optuna constraint (`Trial.set_constraint`), so the study's
  best trial is always a feasible one;
- pruning: each job gets its trial through `hydra.job.env_set`, reports its
  per-epoch error and stops when the configured pruner says so;
- resume: the study lives in storage (SQLite under outputs/ by default) under a
  name derived from the command, so re-running the command continues it:
  finished trials are kept, trials whose process died are marked failed, and
  only the trials still owed are run;
- failures: a failing trial is recorded FAIL with its reason and the sweep goes
  on, until more than max_failure_rate * n_trials trials have failed;
- the report (winner.json, Pareto front) in the sweep folder.

Registered with Hydra through the `hydra.plugins` entry point in pyproject.toml.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import optuna
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from optuna.trial import FrozenTrial, Trial, TrialState

from mnist_sweep import report, run_folder
from mnist_sweep.processes import process_alive
from mnist_sweep.pruning import (
    LOCAL_STUDIES,
    TRIAL_ENV,
    accuracy_of,
    build_pruner,
    selection_accuracy,
    selection_split,
)
from mnist_sweep.samplers import bind_grid

log = logging.getLogger(__name__)

SAMPLER_TARGETS = ["hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def derive_study_name(prefix: str, task_overrides: Sequence[str], params: Any) -> str:
    """Same command, same name: a hash of the command-line overrides and the search space.

    Sweeper settings (n_trials, storage, seed) are not part of it, so a re-run
    asking for more trials continues the same study.
    """
    search_space = {str(k): str(v) for k, v in (params or {}).items()}
    text = json.dumps({"overrides": sorted(task_overrides), "params": search_space}, sort_keys=True)
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def display_url(url: str | None) -> str:
    """A storage URL fit for logs: the password masked."""
    if not url:
        return "in memory"
    from sqlalchemy.engine import make_url

    return make_url(str(url)).render_as_string(hide_password=True)


def _user_error(message: str) -> NoReturn:
    # SystemExit passes through Hydra's and instantiate's `except Exception`:
    # the user gets this one line instead of a traceback.
    raise SystemExit(f"error: {message}")


def _mark_run_failed(run_dir: str | None, reason: str) -> None:
    """A dead trial's run folder still says "running": say what became of it."""
    try:
        metrics = run_folder.read_metrics(run_dir)
    except (OSError, TypeError, ValueError):
        return
    if metrics.get("status") == "running":
        metrics.update(status="failed", error=reason)
        run_folder.write_json(Path(run_dir) / run_folder.METRICS, metrics)


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
    ) -> None:
        if str(direction) != "minimize":
            _user_error(
                "this sweeper minimises the parameter count under an accuracy constraint; "
                f"hydra.sweeper.direction must be 'minimize', got {direction!r}"
            )
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

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        if not self.study_name:
            prefix = config.hydra.runtime.choices.get("hparams_search") or "sweep"
            self.study_name = derive_study_name(
                prefix, list(config.hydra.overrides.task), self.params
            )
            # Jobs are composed afresh from hydra.overrides.hydra, so the name
            # goes there too; the sweep dir interpolates it.
            sweeper_cfg, hydra_overrides = config.hydra.sweeper, config.hydra.overrides.hydra
            with read_write(sweeper_cfg), open_dict(sweeper_cfg), read_write(hydra_overrides):
                sweeper_cfg.study_name = self.study_name
                hydra_overrides.append(f"hydra.sweeper.study_name={self.study_name}")
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    # -- storage and study -------------------------------------------------

    def _open_study(self) -> optuna.Study:
        # Heartbeats are "experimental" in Optuna; this sweeper relies on them knowingly.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # ...and uses them with ask/tell, which Optuna warns is not their usual use.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        storage: Any = self.storage
        if storage:
            if str(storage).startswith("sqlite:///"):
                Path(str(storage)[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            self._rdb = storage = self._connect(str(storage))
        elif type(self.launcher).__name__ != "BasicLauncher":
            _user_error(
                "jobs in other processes cannot reach an in-memory study; set hydra.sweeper.storage"
            )
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler,
            direction="minimize",
            pruner=build_pruner(self.pruner_cfg),
            load_if_exists=True,
        )
        LOCAL_STUDIES[study.study_name] = study
        return study

    def _connect(self, url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
        from sqlalchemy.exc import SQLAlchemyError

        attempt = 0
        while True:
            attempt += 1
            try:
                # Heartbeats let any worker tell a trial whose process died from a slow one.
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=self.heartbeat_interval,
                    grace_period=self.grace_period,
                    heartbeat_stale_trial_callback=self._after_stale,
                    engine_kwargs={"connect_args": {"timeout": 60}}
                    if url.startswith("sqlite")
                    else {},
                )
            except SQLAlchemyError:
                # Workers starting together on a fresh database race to create
                # Optuna's tables; a loser finds them made when it tries again.
                if attempt == attempts:
                    raise
                log.info("storage not ready (attempt %d of %d), retrying", attempt, attempts)
                time.sleep(attempt)

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
        _mark_run_failed(trial.user_attrs.get("run_dir"), reason)
        return True

    def _retry(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Queue the same parameters again (up to retry_failed times) for any worker to run."""
        retries = int(trial.user_attrs.get("retries", 0))
        if retries < self.retry_failed:
            study.enqueue_trial(
                trial.params, user_attrs={"retry_of": trial.number, "retries": retries + 1}
            )
            log.info("trial %d will be retried with the same parameters", trial.number)

    def _after_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna has failed a trial whose worker sent no heartbeat for grace_period seconds."""
        reason = f"interrupted: no heartbeat from its worker for {self.grace_period}s"
        log.warning("trial %d %s: marked failed", trial.number, reason)
        _mark_run_failed(trial.user_attrs.get("run_dir"), reason)
        self._retry(study, trial)

    def _fail_orphans(self, study: optuna.Study) -> None:
        """Mark as failed (and retry, if configured) the RUNNING trials whose worker is gone."""
        if self._rdb is not None:
            optuna.storages.fail_stale_trials(study)  # any host: by heartbeat
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # This host's dead workers need not wait for the heartbeat's grace period.
            owner_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
            dead = owner_host == host and pid.isdigit() and not process_alive(int(pid))
            if dead and self._fail(study, trial, "interrupted: the sweep process died"):
                log.warning("trial %d was interrupted (its sweep process died)", trial.number)
                self._retry(study, trial)

    def _others_running(self, study: optuna.Study) -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    def _surplus(self, study: optuna.Study, trial: Trial) -> bool:
        """True when workers racing for the last trials asked for one too many: the
        later trial number yields, so the study never holds more than n_trials."""
        return sum(t.number < trial.number for t in self._taken(study)) >= self.n_trials

    @contextmanager
    def _heartbeat(self, trials: list[Trial]) -> Iterator[None]:
        if self._rdb is None:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while True:
                for trial in trials:
                    self._rdb.record_heartbeat(trial._trial_id)
                if stop.wait(self.heartbeat_interval):
                    return

        thread = threading.Thread(target=beat, daemon=True, name="optuna-heartbeat")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    # -- one batch of trials -----------------------------------------------

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
                _user_error(
                    f"hydra.sweeper.promote.study={name} is not in {display_url(self.storage)}; "
                    "name a study of the same storage (outputs/sweeps/<study name>/)"
                )
            done = earlier.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            feasible = [
                t
                for t in done
                if t.user_attrs.get("selection_acc", -1) >= t.user_attrs.get("target_acc", 101)
            ]
            feasible.sort(key=lambda t: (t.value, -t.user_attrs["selection_acc"]))
            points += [dict(t.params) for t in feasible[:top]]
        return points

    def _enqueue_starting_trials(self, study: optuna.Study, distributions: dict[str, Any]) -> None:
        """Queue the starting points once: a resumed study does not queue them again."""
        for point in self._starting_points(study):
            unknown = sorted(set(point) - set(distributions))
            if unknown:
                _user_error(
                    f"hydra.sweeper.enqueue/promote names {', '.join(unknown)}, which the search "
                    "space does not sweep; add them to hydra.sweeper.params or drop them"
                )
            study.enqueue_trial(point, skip_if_exists=True)

    def _trial_overrides(self, trial: Trial, sweep_dir: Path) -> tuple[str, ...]:
        subdir = f"trial_{trial.number:03d}"
        trial.set_user_attr("run_dir", str(sweep_dir / subdir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        return (
            f"hydra.sweep.subdir={subdir}",
            f"++hydra.job.env_set.{TRIAL_ENV}={trial._trial_id}",
        )

    def _tell(self, study: optuna.Study, trial: Trial, ret: Any) -> bool:
        """Record one job's outcome in the study; False when the trial failed."""
        target = float(ret.cfg.target_acc) if ret.cfg is not None else float(self.config.target_acc)
        trial.set_user_attr("target_acc", target)
        try:
            result = ret.return_value
        except optuna.TrialPruned as e:
            reported = study.trials[trial.number].intermediate_values
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

    def _next_batch(self, study: optuna.Study) -> list[Trial]:
        """The next trials to run; empty once the study holds n_trials finished ones.

        While other workers still run the last trials, keep watch: if one of
        them dies, its trial is failed (and retried) here instead of being lost.
        """
        waiting_logged = False
        while True:
            self._fail_orphans(study)
            batch: list[Trial] = []
            for _ in range(min(self._owed(study), self.n_jobs)):
                trial = study.ask()
                if self._surplus(study, trial):
                    self._fail(study, trial, "surplus: other workers took the study's last trials")
                    break
                batch.append(trial)
            if batch:
                return batch
            running = self._others_running(study)
            if not running:
                return []
            if not waiting_logged:
                log.info("waiting for the %d trials other workers are running", running)
                waiting_logged = True
            time.sleep(self.heartbeat_interval)

    # -- the sweep -----------------------------------------------------------

    def sweep(self, arguments: list[str]) -> None:
        self._process_searchspace_config()
        distributions, fixed_params, fixed_overrides = create_params_from_overrides(
            self._parse_sweeper_params_config() + list(arguments)
        )
        for name in fixed_params:
            distributions.pop(name, None)
        self.sampler, self.n_trials = bind_grid(self.sampler, distributions, self.n_trials)
        study = self._open_study()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        self._enqueue_starting_trials(study, distributions)
        self._fail_orphans(study)
        kept = len(study.get_trials(deepcopy=False, states=FINISHED))
        log.info(
            "study %s (storage %s): %d finished trials kept, %d to run; sweep folder %s",
            study.study_name, display_url(self.storage), kept, max(self._owed(study), 0),
            sweep_dir,
        )  # fmt: skip
        # A search preset may fix its own target (a screening stage does).
        target = float(fixed_params.get("target_acc", self.config.target_acc))
        failures = 0
        in_flight: list[Trial] = []
        try:
            while in_flight := self._next_batch(study):
                jobs = self._configure_trials(
                    in_flight, distributions, fixed_params, fixed_overrides
                )
                jobs = [
                    (*job, *self._trial_overrides(t, sweep_dir))
                    for job, t in zip(jobs, in_flight, strict=True)
                ]
                with self._heartbeat(in_flight):
                    returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
                self.job_idx += len(returns)
                failures += sum(
                    not self._tell(study, t, r) for t, r in zip(in_flight, returns, strict=True)
                )
                in_flight = []
                if failures > self.max_failure_rate * self.n_trials:
                    report.write(study, sweep_dir, target)
                    _user_error(
                        f"stopping the sweep: {failures} of {self.job_idx} trials failed "
                        f"(max_failure_rate={self.max_failure_rate}); their reasons are in the log "
                        "above, the study's fail_reason attributes and the run folders"
                    )
        except KeyboardInterrupt:
            for trial in in_flight:
                self._fail(study, trial, "interrupted (Ctrl-C)")
            report.write(study, sweep_dir, target)
            log.error(
                "interrupted: the study keeps every finished trial; "
                "re-run the same command to continue %s",
                study.study_name,
            )
            raise
        winner = report.write(study, sweep_dir, target)
        if self.confirm_seeds > 0 and winner["params"] is not None:
            from mnist_sweep.confirm import confirm

            confirm(sweep_dir, self.confirm_seeds)
