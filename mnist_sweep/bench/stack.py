"""`--stack 1,10,50`: K seeds trained as one stacked run, against one solo run, side by side.

Every path is built as the trainer builds it, on a training subset of
`--batches` batches, warmed up with one short epoch, then timed in interleaved
rounds (solo, K=1, K=10, ... in every round), so that the figures share the
machine's load. A round is one epoch over the subset; seconds per epoch are
scaled to the full training set (60,000 images less data.val_size).

- solo: today's path (run/fit.py's train_epoch), the K=1 eager baseline;
- stacked K: stack/fit.py's eager step over K copies;
- stacked K, CUDA graph: the same step replayed as one CUDA graph (CUDA only).

Trainings per hour count training epochs only (trainer.epochs of them), not
the per-epoch test pass: K copies per run, over epochs x seconds per epoch.
The JSON written holds every round's figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mnist_sweep.bench.timing import warmed_run, warmup_image_count, with_changes
from mnist_sweep.errors import UserError
from mnist_sweep.run.build import cpu_threads
from mnist_sweep.run.data import DeviceData
from mnist_sweep.run.fit import sync, train_epoch
from mnist_sweep.stack.build import build_stacked
from mnist_sweep.stack.fit import train_epoch_stacked
from mnist_sweep.stack.graph import GraphedTraining, uses_cuda_graph

EPOCH_IMAGES = 60_000


def parse_stack(text: str) -> list[int]:
    """`1,10,50` as [1, 10, 50]; UserError for anything else."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(k < 1 for k in counts):
        raise UserError(f"--stack {text}: give copy counts >= 1, e.g. --stack 1,10,50")
    return sorted(set(counts))


def _first(data: DeviceData, images: int) -> DeviceData:
    return dataclasses.replace(data, train_x=data.train_x[:images], train_y=data.train_y[:images])


def _timed(train: Callable[[], Any], device: torch.device) -> Callable[[], None]:
    def epoch() -> None:
        train()
        sync(device)  # the device is done when the timer stops

    return epoch


def _stacked(
    cfg: DictConfig, k: int, epochs: int, warmup_images: int, graph: bool
) -> tuple[Callable[[], None], float]:
    """A warmed stacked run of k copies (seeds trainer.seed, +1, ...): its timed epoch and
    its warm-up seconds."""
    seeds = [cfg.trainer.seed + i for i in range(k)]
    run = build_stacked(with_changes(cfg, trainer__epochs=epochs), seeds)
    t0 = time.perf_counter()
    if graph:  # the warm-up is a whole epoch: it captures the graph
        graphed = GraphedTraining(run)
        graphed.train_epoch(run)
        epoch = _timed(lambda: graphed.train_epoch(run), run.device)
    else:  # a shorter epoch on the first batches: kernel selection and the like
        train_epoch_stacked(dataclasses.replace(run, data=_first(run.data, warmup_images)))
        epoch = _timed(lambda: train_epoch_stacked(run), run.device)
    sync(run.device)
    return epoch, time.perf_counter() - t0


def run_stack(args: argparse.Namespace, cfg: DictConfig, out: Path) -> dict[str, Any]:
    """Time the solo path and each stacked K in interleaved rounds; print and write the JSON."""
    counts = parse_stack(args.stack)
    images = args.batches * cfg.data.batch_size
    if images > EPOCH_IMAGES:
        raise UserError(f"--batches {args.batches} x batch {cfg.data.batch_size} exceeds 60,000")
    cfg = with_changes(cfg, data__train_subset=images)
    epochs = args.repeats + 1  # the rounds and the warm-up: the schedule must last them all
    warmup_images = warmup_image_count(args, cfg)
    with cpu_threads(cfg.trainer.get("threads")):
        solo_run, solo_warmup = warmed_run(cfg, epochs, warmup_images)
        solo = _timed(lambda: train_epoch(solo_run), solo_run.device)
        paths: dict[str, tuple[int, Callable[[], None], float]] = {"solo": (1, solo, solo_warmup)}
        graph = uses_cuda_graph(cfg, solo_run.device)
        for k in counts:
            paths[f"stacked {k}"] = (k, *_stacked(cfg, k, epochs, warmup_images, False))
            if graph:
                paths[f"stacked {k}, CUDA graph"] = (k, *_stacked(cfg, k, epochs, 0, True))
        trained = solo_run.data.n_train
        print(
            f"model {cfg.model.name} ({solo_run.params:,} params), batch {cfg.data.batch_size}, "
            f"{trained:,} images x {args.repeats} rounds, device {solo_run.device_name}"
        )
        rounds: dict[str, list[float]] = {label: [] for label in paths}
        for _ in range(args.repeats):
            for label, (_, timed, _) in paths.items():
                t0 = time.perf_counter()
                timed()
                rounds[label].append(time.perf_counter() - t0)
    full = EPOCH_IMAGES - (cfg.data.val_size or 0)
    epochs_planned = int(cfg.trainer.epochs)
    rows = []
    for label, (k, _, warmup) in paths.items():
        per_epoch = statistics.median(rounds[label]) * full / trained
        rows.append(
            {
                "path": label,
                "copies": k,
                "seconds_per_epoch": round(per_epoch, 3),
                "trainings_per_hour": round(k * 3600 / (per_epoch * epochs_planned), 2),
                "warmup_seconds": round(warmup, 3),
                "round_seconds": [round(s, 4) for s in rounds[label]],
            }
        )
    base = rows[0]["trainings_per_hour"]
    for row in rows:
        row["ratio_to_solo"] = round(row["trainings_per_hour"] / base, 3)
        print(
            f"{row['path']:<26} {row['seconds_per_epoch']:9.1f} s/epoch  "
            f"{row['trainings_per_hour']:9.1f} trainings/h  {row['ratio_to_solo']:6.2f}x solo"
        )
    report = {
        "model": str(cfg.model.name),
        "params": solo_run.params,
        "device": solo_run.device_name,
        "torch": str(torch.__version__),
        "batch_size": int(cfg.data.batch_size),
        "timed_images": trained,
        "epoch_images": full,
        "epochs": epochs_planned,
        "repeats": args.repeats,
        "rows": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report
