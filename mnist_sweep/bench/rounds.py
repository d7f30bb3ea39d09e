"""The project side of a speed round: one training, or --concurrent N of them at once
(a sweep's trials sharing the machine), each round timed against the reference's."""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.bench.project import timed_epoch, warmed_run, with_changes
from mnist_sweep.errors import UserError
from mnist_sweep.run.train import cpu_threads

# A timed round of the project side: images/s over `--batches` batches.
TimedRound = Callable[[], float]


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of per-round ratios: a round's two figures share the machine's load."""
    return statistics.median(b / a for b, a in zip(numerators, denominators, strict=True))


def warmup_size(args: argparse.Namespace, cfg: DictConfig) -> int:
    """--warmup batches (at least one, at most --batches) of the config's batch size."""
    return min(max(1, args.warmup), args.batches) * cfg.data.batch_size


def _s(count: int) -> str:
    return "" if count == 1 else "s"


@contextlib.contextmanager
def one_training(
    cfg: DictConfig, device: torch.device, args: argparse.Namespace
) -> Iterator[tuple[str, float, TimedRound]]:
    """The project path as `train()` runs it: yields (description, warm-up s, timed round)."""
    images = args.batches * cfg.data.batch_size
    run, warmup = warmed_run(
        with_changes(cfg, data__train_subset=images),
        device,
        args.repeats + 1,
        warmup_size(args, cfg),
    )
    with cpu_threads(cfg.trainer.get("threads")):
        count = torch.get_num_threads()
    yield f"{count} thread{_s(count)}", warmup, functools.partial(timed_epoch, run)


def _training_worker(
    cfg_yaml: str, device: str, epochs: int, warmup_images: int, conn: Any
) -> None:
    """One of --concurrent trainings, in its own process: a round whenever the parent asks."""
    try:
        cfg = OmegaConf.create(cfg_yaml)
        run, _ = warmed_run(cfg, torch.device(device), epochs, warmup_images)
        with cpu_threads(cfg.trainer.get("threads")):
            conn.send(torch.get_num_threads())
            while conn.recv():
                run.epoch()
                conn.send(0)
    except Exception as e:  # the parent turns it into its one-line error
        conn.send(f"{type(e).__name__}: {e}")


@contextlib.contextmanager
def concurrent_trainings(
    cfg: DictConfig, device: torch.device, args: argparse.Namespace
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
                    str(device),
                    args.repeats + 1,
                    warmup_size(args, cfg),
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
