"""The project's Optuna sweeper: a thin Hydra plugin over Optuna's own loop.

Hydra composes and launches; Optuna schedules. `sweep()` parses the command line into a
search space (the stock hydra-optuna-sweeper's parsing, the command line winning), opens
the study and hands a `TrialJobs` objective (search/objective.py) to `study.optimize`
(search/workers.py), then writes the report (search/report.py). What it adds to the stock
sweeper, whose keys keep their meaning, is in docs/SEARCH.md: the objectives, seeds inside
a trial, pruning, resume by the command's own study name, the space checked up front.
Registered with Hydra through the `hydra.plugins` entry point in pyproject.toml.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from optuna.trial import Trial

from mnist_sweep.errors import (
    ConfigError,
    UserError,
    exit_on_user_error,
    fail,
    forward_sigterm_to_children,
    interruption,
    stop_child_processes,
)
from mnist_sweep.schema.sweeper import validate_sweeper
from mnist_sweep.search import report, stacking, workers
from mnist_sweep.search.objective import FINISHED, TrialJobs, taken
from mnist_sweep.search.pruning import build_pruner
from mnist_sweep.search.samplers import bind_grid
from mnist_sweep.search.space import check_space, parse_space
from mnist_sweep.search.starting_points import enqueue_starting_points
from mnist_sweep.search.storage import display_url, open_storage
from mnist_sweep.search.winner import Winner
from mnist_sweep.track import check_store

log = logging.getLogger(__name__)

SAMPLER_TARGETS = ["hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*"]
THROUGHPUT = "throughput.json"


def derive_study_name(prefix: str, task_overrides: Sequence[str], params: Any) -> str:
    """Same command, same name: a hash of the command-line overrides and the search space.

    Sweeper settings (n_trials, storage, seed) and the logger are not part of it, so a
    re-run asking for more trials, or logging elsewhere, continues the same study.
    """
    search_space = {str(k): str(v) for k, v in (params or {}).items()}
    # Where a run's figures are also sent changes nothing it computes.
    trained = sorted(o for o in task_overrides if not o.lstrip("+~").startswith("logger"))
    text = json.dumps({"overrides": trained, "params": search_space}, sort_keys=True)
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _plain(value: Any) -> Any:
    """A setting as plain Python (Hydra hands lists and mappings over as configs)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class MnistSweeper(OptunaSweeperImpl):
    def __init__(
        self,
        sampler: Any,
        custom_search_space: str | None,
        params: DictConfig | None,
        pruner: Any = None,
        **settings: Any,
    ) -> None:
        try:
            self.settings = validate_sweeper({k: _plain(v) for k, v in settings.items()})
        except ConfigError as e:
            fail(str(e))
        s, directions = self.settings, self.settings.goal.directions
        super().__init__(
            instantiate(sampler, _execution_whitelist_=SAMPLER_TARGETS),
            directions[0] if len(directions) == 1 else directions,
            *(s.storage, s.study_name, s.n_trials, s.n_jobs, s.max_failure_rate),
            custom_search_space,
            params,
        )
        self.pruner_cfg = pruner
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        if not self.study_name:
            prefix = config.hydra.runtime.choices.get("hparams_search") or "sweep"
            name = derive_study_name(prefix, list(config.hydra.overrides.task), self.params)
            self.study_name = self._fix_for_jobs(config, "study_name", name)
        if not self.storage:
            # No storage named: a throwaway database that the jobs reach by URL like any other.
            self._scratch = tempfile.TemporaryDirectory(prefix="mnist-sweep-")
            url = f"sqlite:///{self._scratch.name}/optuna.db"
            self.storage = self._fix_for_jobs(config, "storage", url)
        self.task_function = task_function
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    @staticmethod
    def _fix_for_jobs(config: DictConfig, key: str, value: str) -> str:
        """Fix a sweeper setting for the jobs too: they are composed afresh from
        hydra.overrides.hydra, and their hydra.sweeper must equal the sweep's."""
        sweeper_cfg, hydra_overrides = config.hydra.sweeper, config.hydra.overrides.hydra
        with read_write(sweeper_cfg), open_dict(sweeper_cfg), read_write(hydra_overrides):
            sweeper_cfg[key] = value
            hydra_overrides.append(f"hydra.sweeper.{key}={value}")
        return value

    # -- pieces ------------------------------------------------------------------------

    def _open_study(self) -> optuna.Study:
        # Heartbeats and the retry callback are "experimental" in Optuna; relied on knowingly.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        settings = self.settings
        storage = open_storage(
            str(self.storage),
            settings.heartbeat_interval,
            settings.grace_period,
            workers.retry_callback(settings.retry_failed),
        )
        return optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=self.sampler,
            directions=settings.goal.directions,
            pruner=build_pruner(self.pruner_cfg),
            load_if_exists=True,
        )

    def _new_launcher(self) -> Launcher:
        """A launcher for one worker thread: none of them need be safe to share."""
        return Plugins.instance().instantiate_launcher(
            config=self.config, hydra_context=self.hydra_context, task_function=self.task_function
        )

    def _workers(self) -> int:
        # The basic launcher runs its jobs in this very process, one at a time.
        if type(self.launcher).__name__ == "BasicLauncher" and self.n_jobs > 1:
            log.info(
                "the basic launcher runs one trial at a time; for n_jobs=%d trials at "
                "once use hydra/launcher=joblib (or submitit)",
                self.n_jobs,
            )
            return 1
        return self.n_jobs

    def _parse_space(self, arguments: list[str]) -> tuple[dict, dict, list]:
        self._process_searchspace_config()
        # The command line wins over the preset's params, key by key.
        distributions, fixed_params, fixed_overrides = parse_space(
            self._parse_sweeper_params_config(), arguments
        )
        try:
            check_space(self.config, distributions, fixed_params)
        except ConfigError as e:
            raise UserError(
                f"{e}; fix it on the command line or in the hparams_search preset"
            ) from None
        return distributions, fixed_params, fixed_overrides

    # -- the sweep ---------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> None:
        # Hydra prints a traceback for anything a sweeper raises, except SystemExit.
        with exit_on_user_error():
            self._sweep(arguments)

    def _sweep(self, arguments: list[str]) -> None:
        forward_sigterm_to_children(False)  # its workers are stopped once their trials are told
        distributions, fixed_params, fixed_overrides = self._parse_space(arguments)
        study, jobs = self._open(distributions, fixed_params, fixed_overrides)
        since = datetime.now()
        try:
            budget = workers.optimize(study, jobs)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (__main__ raises it as Ctrl-C)
            stop, running = interruption(e), jobs.running()
            reason = f"interrupted by {stop.signal_name}"
            # Trials of worker threads the signal did not reach. Their workers are stopped
            # before their trials are told: one told first would find its trial finished
            # at its next epoch and record its run failed, not interrupted.
            for number in running:
                workers.fail_running(study, number, reason, tell=False)
            if jobs.place.workers > 1:
                stop_child_processes()
            for number in running:
                workers.fail_running(study, number, reason)
            self._report(study, jobs, since)
            log.error(
                "interrupted: the study keeps every finished trial; "
                "re-run the same command to continue %s",
                study.study_name,
            )
            if jobs.place.workers > 1:
                workers.exit_abandoning_jobs(stop.exit_status, stop.line())
            raise
        winner = self._report(study, jobs, since)
        if budget.spent:
            raise UserError(
                f"stopping the sweep: {budget.failures} of {budget.told} trials failed "
                f"(max_failure_rate={self.settings.max_failure_rate}); their reasons are in the "
                "log above, the study's fail_reason attributes and the run folders"
            )
        if self.settings.confirm_seeds > 0 and winner.params is not None:
            from mnist_sweep.search.confirm import confirm

            confirm(jobs.sweep_dir, self.settings.confirm_seeds)

    def _open(
        self, distributions: dict, fixed_params: dict, fixed_overrides: list
    ) -> tuple[optuna.Study, TrialJobs]:
        """The study, its starting points queued and its orphans failed, and the objective
        its workers run."""
        self.sampler, n_trials = bind_grid(self.sampler, distributions, self.n_trials)
        fixed = {"n_trials": n_trials, "storage": str(self.storage), "study_name": self.study_name}
        settings = self.settings = self.settings.model_copy(update=fixed)
        check_store(self.config.get("logger"))  # once, not once per failing trial
        study = self._open_study()
        enqueue_starting_points(study, settings, distributions, fixed_params)
        # A search preset may fix its own target (a screening stage does).
        target = float(fixed_params.get("target_acc", self.config.target_acc))
        study.set_user_attr("target_acc", target)  # for the pruners and the report CLI

        def configure(trial: Trial) -> Sequence[str]:
            (job,) = self._configure_trials([trial], distributions, fixed_params, fixed_overrides)
            return job

        jobs = TrialJobs(
            settings=settings,
            configure=configure,
            new_launcher=self._new_launcher,
            sweep_dir=Path(str(self.config.hydra.sweep.dir)),
            target=target,
            metric=self.config.get("optimized_metric"),
            place=stacking.place(
                str(self.config.trainer.device),
                self._workers(),
                settings.seeds,
                settings.stack_seeds,
            ),
            default_seed=int(self.config.trainer.seed),
        )
        workers.fail_orphans(study, settings.retry_failed)
        log.info(
            "study %s (storage %s): %d finished trials kept, %d to run by %d workers; "
            "sweep folder %s",
            study.study_name,
            display_url(self.storage),
            len(study.get_trials(deepcopy=False, states=FINISHED)),
            max(n_trials - len(taken(study)), 0),
            jobs.place.workers,
            jobs.sweep_dir,
        )
        # Optuna logs each caught failure with its traceback; the sweep logs its own line.
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        return study, jobs

    def _report(self, study: optuna.Study, jobs: TrialJobs, since: datetime) -> Winner:
        """throughput.json and the report (winner.json, CSVs, plots) in the sweep folder."""
        launcher, path = type(self.launcher).__name__, jobs.sweep_dir / THROUGHPUT
        workers.write_throughput(study, path, since, jobs.place.workers, launcher)
        return report.write(study, jobs.sweep_dir, jobs.target)
