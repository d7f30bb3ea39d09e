"""(b) The project's own path, built as `train()` builds it and timed an epoch at a time.

One training in this process (`one_training`) or N at once in their own
processes (`concurrent_trainings`, a sweep's trials sharing the machine); either
yields a round to time, so the speed mode treats them alike.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.errors import UserError
from mnist_sweep.run.build import Run, build, cpu_threads
from mnist_sweep.run.data import DeviceData
from mnist_sweep.run.fit import evaluate, sync, train_epoch

# A timed round of the project side: images/s over `--batches` batches.
TimedRound = Callable[[], float]


def with_changes(cfg: DictConfig, **changes: Any) -> DictConfig:
    """A copy of the config with dotted keys set (`data__train_subset=...`)."""
    cfg = copy.deepcopy(cfg)
    for key, value in changes.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False)
    return cfg


def warmup_image_count(args: argparse.Namespace, cfg: DictConfig) -> int:
    """--warmup batches (at least one, at most --batches) of the config's batch size."""
    return min(max(1, args.warmup), args.batches) * cfg.data.batch_size


def project_run(cfg: DictConfig, epochs: int) -> Run:
    """The run as `train()` builds it, with a schedule planned for `epochs` epochs."""
    return build(with_changes(cfg, trainer__epochs=epochs))


def _first_batches(data: DeviceData, images: int) -> DeviceData:
    return dataclasses.replace(data, train_x=data.train_x[:images], train_y=data.train_y[:images])


def warmed_run(cfg: DictConfig, epochs: int, warmup_images: int) -> tuple[Run, float]:
    """`project_run`, then one short untimed epoch; returns the run and that epoch's seconds.

    Each timed round is one train_epoch over the whole (subset) training tensor;
    the warm-up is one more, shorter epoch, hence epochs = rounds + 1. It is
    where one-off costs (kernel selection) land.
    """
    run = project_run(cfg, epochs)
    with cpu_threads(cfg.trainer.get("threads")):
        t0 = time.perf_counter()
        train_epoch(run, _first_batches(run.data, warmup_images))
        sync(run.device)
        return run, time.perf_counter() - t0


def timed_epoch(run: Run) -> float:
    """images/s of one train_epoch, under the run's own thread count."""
    with cpu_threads(run.cfg.trainer.get("threads")):
        t0 = time.perf_counter()
        train_epoch(run)  # ends with .item(): the device is done when it returns
        return run.data.n_train / (time.perf_counter() - t0)


def timed_test_pass(run: Run) -> float:
    """Seconds of one evaluation of the shipped weights on the test set, as every epoch
    of a training ends."""
    data = run.data
    with cpu_threads(run.cfg.trainer.get("threads")):
        t0 = time.perf_counter()
        evaluate(run.shipped(), data.test_x, data.test_y, run.eval_batch_size, run.autocast)
        return time.perf_counter() - t0


def _s(count: int) -> str:
    return "" if count == 1 else "s"


@contextlib.contextmanager
def one_training(
    cfg: DictConfig, args: argparse.Namespace
) -> Iterator[tuple[str, float, TimedRound]]:
    """The project path as `train()` runs it: yields (description, warm-up s, timed round)."""
    images = args.batches * cfg.data.batch_size
    run, warmup = warmed_run(
        with_changes(cfg, data__train_subset=images),
        args.repeats + 1,
        warmup_image_count(args, cfg),
    )
    with cpu_threads(cfg.trainer.get("threads")):
        count = torch.get_num_threads()
    yield f"{count} thread{_s(count)}", warmup, functools.partial(timed_epoch, run)


def _training_worker(cfg_yaml: str, epochs: int, warmup_images: int, conn: Any) -> None:
    """One of --concurrent trainings, in its own process: a round whenever the parent asks."""
    try:
        cfg = OmegaConf.create(cfg_yaml)
        run, _ = warmed_run(cfg, epochs, warmup_images)
        with cpu_threads(cfg.trainer.get("threads")):
            conn.send(torch.get_num_threads())
            while conn.recv():
                train_epoch(run)
                conn.send(0)
    except Exception as e:  # the parent turns it into its one-line error
        conn.send(f"{type(e).__name__}: {e}")


@contextlib.contextmanager
def concurrent_trainings(
    cfg: DictConfig, args: argparse.Namespace
) -> Iterator[tuple[str, float, TimedRound]]:
    """--concurrent N: N trainings at once (a sweep's trials), each in its own process.

    A round is timed from the moment all N are told to start to the moment the
    last one finishes, so the figure is the machine's throughput, not the best worker's.
    """
    n, images = args.concurrent, args.batches * cfg.data.batch_size
    context = torch.multiprocessing.get_context("spawn")
    conns, procs = [], []

    def replies() -> list[Any]:
        answers = [conn.recv() for conn in conns]
        failed = [a for a in answers if isinstance(a, str)]
        if failed:
            raise UserError(f"a concurrent training failed: {failed[0]}")
        return answers

    try:
        t0 = time.perf_counter()
        for k in range(n):
            parent, child = context.Pipe()
            # Distinct seeds: a sweep's trials are distinct trainings.
            trial = with_changes(cfg, data__train_subset=images, trainer__seed=cfg.trainer.seed + k)
            proc = context.Process(
                target=_training_worker,
                args=(
                    OmegaConf.to_yaml(trial, resolve=True),
                    args.repeats + 1,
                    warmup_image_count(args, cfg),
                    child,
                ),
                daemon=True,
            )
            proc.start()
            conns.append(parent)
            procs.append(proc)
        threads = replies()[0]
        warmup = time.perf_counter() - t0  # process start-up and data loading included

        def timed() -> float:
            t0 = time.perf_counter()
            for conn in conns:
                conn.send(True)
            replies()
            # Images trained: a held-out validation split (data.val_size) is not.
            return n * (images - (cfg.data.val_size or 0)) / (time.perf_counter() - t0)

        yield f"{n} trainings at once, {threads} thread{_s(threads)} each", warmup, timed
    finally:
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.send(False)
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
