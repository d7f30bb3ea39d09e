"""One training, config in, run folder and metrics out: build, fit, and the record of both.

`train(cfg, run_dir)` builds the run from the composed config (run/build.py),
trains it for `trainer.epochs` (run/fit.py) and keeps its record: metrics.json
is rewritten after every epoch beside the epoch's checkpoint, so even a run
that dies leaves its history, and says at the end whether the run completed,
was pruned or failed. The `logger` group's tracker (mnist_sweep/track/) hears of
each epoch after metrics.json has it, and of the end after the last write.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from optuna.exceptions import TrialPruned

from mnist_sweep.errors import interruption, sigterm_interrupts
from mnist_sweep.run import checkpoint, record
from mnist_sweep.run.build import Run, TrainingSetup, build, build_setup, cpu_threads
from mnist_sweep.run.fit import fit
from mnist_sweep.run.record import EpochRow, RunRecord, RunStatus
from mnist_sweep.schema import validate
from mnist_sweep.track import RunLabels, open_tracker

log = logging.getLogger(__name__)

# Called after every epoch with the metrics so far (metrics.json's content); may
# raise optuna's TrialPruned to stop the run early.
EpochCallback = Callable[[dict[str, Any]], None]


def new_record(cfg: DictConfig, setup: TrainingSetup) -> RunRecord:
    """The record of a run that is about to start."""
    return RunRecord(
        model=cfg.model.name,
        params=setup.params,
        target_acc=cfg.target_acc,
        epochs_planned=setup.epochs,
        seed=cfg.trainer.seed,
        device=setup.device_name,
        torch=str(torch.__version__),  # a str subclass that weights_only loading refuses
        host=socket.gethostname(),
        pid=os.getpid(),
    )


def train(
    cfg: DictConfig,
    run_dir: str | Path,
    on_epoch_end: EpochCallback | None = None,
    labels: RunLabels | None = None,
) -> dict[str, Any]:
    """Train per the composed config, filling the run folder; returns what metrics.json holds.
    `labels` say which sweep and trial the run belongs to, for the tracker."""
    validate(cfg)  # every key in range before anything is loaded or written
    # SIGTERM (timeout, SLURM, Kubernetes, docker stop) ends the run as Ctrl-C does, here
    # and in a sweep's worker processes alike.
    with cpu_threads(cfg.trainer.get("threads")), sigterm_interrupts():
        return _train(cfg, Path(run_dir), on_epoch_end, labels)


def _train(
    cfg: DictConfig,
    run_dir: Path,
    on_epoch_end: EpochCallback | None,
    labels: RunLabels | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    setup = build_setup(cfg)  # an impossible config stops here, before the run is on record
    metrics = new_record(cfg, setup)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    # Where a run is tracked changes nothing it computes, so resuming may change it,
    # and a tracking URL's password stays out of checkpoint.pt.
    logger_cfg = resolved.pop("logger", None)
    resume = cfg.trainer.get("resume") or checkpoint.requeued(run_dir)
    saved = checkpoint.load_resumable(run_dir, resolved) if resume else None
    if saved is not None and saved.resume is not None:  # the history so far, and its time
        before = saved.resume.metrics
        for row in before.epochs:
            metrics.add_epoch(row)
        metrics.resumed_after_epoch = saved.epoch
        started -= before.wall_seconds
    # Before the run is on record: a store that cannot be reached stops it here.
    tracker = open_tracker(logger_cfg, resolved, run_dir, metrics, labels)

    def save(status: RunStatus, error: str | None = None, signal: str | None = None) -> None:
        metrics.status, metrics.error, metrics.signal = status, error, signal
        metrics.wall_seconds = round(time.perf_counter() - started, 3)
        metrics.save(run_dir)

    save(RunStatus.RUNNING)  # from here on, metrics.json tells what became of the run
    try:
        run = build(cfg, setup)
        record.write_model_summary(run_dir, run.model)
        first_epoch = 1
        if saved is not None:
            first_epoch = checkpoint.restore(saved, run)
            log.info("resuming %s after epoch %d", run_dir, first_epoch - 1)
        log.info(
            "model %s: %s params | %s train / %s test images | %s",
            cfg.model.name,
            f"{run.params:,}",
            f"{run.data.n_train:,}",
            f"{run.data.test_x.shape[0]:,}",
            metrics.device,
        )

        def keep(row: EpochRow) -> None:
            metrics.add_epoch(row)
            save(RunStatus.RUNNING)
            record.save_checkpoint(run_dir, checkpoint.snapshot(run, resolved, row.epoch, metrics))

        callbacks = [keep, lambda row: _log_epoch(run, row), tracker.log_epoch]
        if on_epoch_end is not None:
            callbacks.append(lambda _: on_epoch_end(metrics.to_dict()))
        fit(run, range(first_epoch, run.epochs + 1), callbacks)
    except TrialPruned:
        save(RunStatus.PRUNED, f"pruned after epoch {len(metrics.epochs)}")
        raise
    except KeyboardInterrupt as e:  # SIGINT or SIGTERM: the history so far is kept
        name = interruption(e).signal_name
        reason = f"interrupted by {name} after epoch {len(metrics.epochs)}"
        save(RunStatus.INTERRUPTED, reason, name)
        raise
    except SystemExit as e:  # a signal handler's exit: submitit's, requeueing a preempted job
        save(RunStatus.INTERRUPTED, f"exited ({e.code}) after epoch {len(metrics.epochs)}")
        raise
    except BaseException as e:  # the history so far must survive any failure
        save(RunStatus.FAILED, str(e) or type(e).__name__)
        raise
    else:
        save(RunStatus.COMPLETED)
    finally:
        if metrics.epochs:
            record.plot_curves(
                run_dir,
                [e.to_dict() for e in metrics.epochs],
                f"{cfg.model.name} ({setup.params:,} params)",
            )
        tracker.finish(metrics)  # after the last write: the artifacts are the final files
    log.info(
        "final test accuracy %.2f%% (target %.2f%%: %s); best epoch %d: %.2f%%",
        metrics.test_acc,
        cfg.target_acc,
        "reached" if metrics.reached_target else "not reached",
        metrics.best_epoch,
        metrics.best_test_acc,
    )
    return metrics.to_dict()


def _log_epoch(run: Run, row: EpochRow) -> None:
    log.info(
        "epoch %d/%d | train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%%%s | lr %.3g | %.1fs",
        row.epoch,
        run.epochs,
        row.train_loss,
        row.train_acc,
        row.test_loss,
        row.test_acc,
        f" | val acc {row.val_acc:.2f}%" if row.val_acc is not None else "",
        row.lr,
        row.seconds,
    )
