"""The bench's modes that run in this process: speed, variants, accuracy, time to target.

Each mode that compares measures both sides in one process, interleaved,
because the machines this project runs on are shared: a figure taken at another
moment is not comparable. The sweep-utilisation mode runs whole sweeps and
lives in sweep.py.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mnist_sweep.bench.reference import (
    endless,
    reference_loader,
    reference_model,
    reference_steps,
)
from mnist_sweep.bench.timing import (
    concurrent_trainings,
    one_training,
    project_run,
    timed_epoch,
    timed_test_pass,
    warmed_run,
    warmup_image_count,
    with_changes,
)
from mnist_sweep.errors import UserError
from mnist_sweep.run.build import cpu_threads
from mnist_sweep.run.fit import evaluate, sync, train_epoch
from mnist_sweep.run.optim import build_optimizer, build_scheduler, steps_per_epoch
from mnist_sweep.run.train import train

EPOCH_IMAGES = 60_000  # a training epoch over the whole MNIST training set


def _median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of per-round ratios: a round's two figures share the machine's load."""
    return statistics.median(b / a for b, a in zip(numerators, denominators, strict=True))


# --- speed ------------------------------------------------------------------------------


def run_speed(args: argparse.Namespace, cfg: DictConfig, device: torch.device) -> float:
    """Interleaved rounds of `args.batches` timed batches per path; returns the speedup."""
    batch_size = cfg.data.batch_size
    images = args.batches * batch_size
    if images > 60000:
        raise UserError(f"--batches {args.batches} x batch {batch_size} exceeds MNIST's 60,000")
    ref_threads = functools.partial(cpu_threads, args.reference_threads)
    ref_model = reference_model(cfg, device)
    ref_optimizer = build_optimizer(cfg.optimizer, ref_model)
    ref_batches = endless(reference_loader(cfg.data.root, batch_size, args.num_workers, device))
    with ref_threads():
        ref_thread_count = torch.get_num_threads()
        t0 = time.perf_counter()
        reference_steps(ref_model, ref_batches, ref_optimizer, device, args.warmup)
        ref_warmup = time.perf_counter() - t0

    project = concurrent_trainings if args.concurrent > 1 else one_training
    with project(cfg, args) as (described, proj_warmup, project_round):
        print(
            f"model {cfg.model.name}, batch {batch_size}, {args.batches} batches x "
            f"{args.repeats} rounds, device {device}"
        )
        print(
            f"(a) {ref_thread_count} threads + {args.num_workers} DataLoader workers, "
            f"warm-up {ref_warmup:.1f} s; (b) {described}, "
            f"channels_last={cfg.trainer.get('channels_last', False)}, "
            f"precision={cfg.trainer.precision}, warm-up {proj_warmup:.1f} s"
        )
        ref_rates: list[float] = []
        proj_rates: list[float] = []
        for round_ in range(1, args.repeats + 1):
            with ref_threads():
                sync(device)
                t0 = time.perf_counter()
                reference_steps(ref_model, ref_batches, ref_optimizer, device, args.batches)
                sync(device)
                ref_rates.append(images / (time.perf_counter() - t0))
            proj_rates.append(project_round())
            print(
                f"round {round_}: (a) {ref_rates[-1]:,.0f} images/s, (b) {proj_rates[-1]:,.0f} "
                f"images/s, ratio {proj_rates[-1] / ref_rates[-1]:.2f}"
            )
    speedup = _median_ratio(proj_rates, ref_rates)
    print(f"(a) reference DataLoader pipeline: {statistics.median(ref_rates):,.0f} images/s")
    what = "project path" if args.concurrent == 1 else f"project path, {args.concurrent} at once"
    print(f"(b) {what}: {statistics.median(proj_rates):,.0f} images/s")
    print(f"speedup: {speedup:.2f}")
    return speedup


def run_variants(
    args: argparse.Namespace, cfg: DictConfig, variants: dict[str, DictConfig]
) -> dict[str, float]:
    """The project path under each variant config, interleaved with `cfg`; median ratios."""
    configs = {"as configured": cfg, **variants}
    images = args.batches * cfg.data.batch_size
    runs = {}
    for label, variant in configs.items():
        runs[label], warmup = warmed_run(
            with_changes(variant, data__train_subset=images),
            args.repeats + 1,
            warmup_image_count(args, variant),
        )
        print(f"warm-up {label}: {warmup:.1f} s")
    rates: dict[str, list[float]] = {label: [] for label in configs}
    test_pass: dict[str, list[float]] = {label: [] for label in configs}
    for round_ in range(1, args.repeats + 1):
        for label, run in runs.items():
            rates[label].append(timed_epoch(run))
            test_pass[label].append(timed_test_pass(run))
        print(f"round {round_}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()))
    base = rates["as configured"]
    ratios = {label: _median_ratio(r, base) for label, r in rates.items()}
    for label, r in rates.items():
        rate, seconds = statistics.median(r), statistics.median(test_pass[label])
        # The test pass as a share of the full epoch it follows in a training.
        share = seconds / (EPOCH_IMAGES / rate + seconds)
        print(
            f"{label}: {rate:,.0f} images/s, {ratios[label]:.2f}x "
            f"(rounds {', '.join(f'{b / a:.2f}' for b, a in zip(r, base, strict=True))}); "
            f"test pass {seconds:.2f} s, {share:.1%} of a {EPOCH_IMAGES:,}-image epoch with it"
        )
    return ratios


# --- accuracy -----------------------------------------------------------------------------


def run_accuracy(args: argparse.Namespace, cfg: DictConfig, device: torch.device) -> bool:
    """One epoch on a subset by each path, same start and batch order; True when they agree."""
    # The reference rotates with PIL, the project warps per batch; no augmentation
    # on either side leaves only the pipelines themselves to compare.
    cfg = with_changes(cfg, data__train_subset=args.subset, data__augment__strength=0.0)
    batch_size = cfg.data.batch_size
    proj = project_run(cfg, epochs=1)
    # train_epoch's first draw from this generator is its shuffle: replay it for (a).
    order = torch.randperm(
        proj.data.n_train,
        device=device,
        generator=torch.Generator(device=device).manual_seed(cfg.trainer.seed),
    ).cpu()

    with cpu_threads(cfg.trainer.get("threads")):
        t0 = time.perf_counter()
        train_epoch(proj)
        proj_seconds = time.perf_counter() - t0
        eval_bs = proj.eval_batch_size
        _, proj_acc = evaluate(
            proj.model, proj.data.test_x, proj.data.test_y, eval_bs, proj.autocast
        )

    ref_model = reference_model(cfg, device)  # the same initial weights as (b)
    ref_optimizer = build_optimizer(cfg.optimizer, ref_model)
    ref_scheduler = build_scheduler(
        cfg.scheduler, ref_optimizer, steps_per_epoch(args.subset, batch_size), 1
    )
    loader = reference_loader(
        cfg.data.root, batch_size, args.num_workers, device, False, args.subset, order
    )
    with cpu_threads(args.reference_threads):
        t0 = time.perf_counter()
        reference_steps(ref_model, iter(loader), ref_optimizer, device, len(loader), ref_scheduler)
        ref_seconds = time.perf_counter() - t0
        _, ref_acc = evaluate(ref_model, proj.data.test_x, proj.data.test_y, eval_bs)

    gap = proj_acc - ref_acc
    print(
        f"model {cfg.model.name}, 1 epoch on {args.subset:,} images, batch {batch_size}, "
        f"no augmentation, device {device}"
    )
    print(f"(a) reference DataLoader pipeline: test accuracy {ref_acc:.2f}% ({ref_seconds:.1f} s)")
    print(f"(b) project path: test accuracy {proj_acc:.2f}% ({proj_seconds:.1f} s)")
    ok = abs(gap) <= args.tolerance
    print(f"accuracy gap: {gap:+.2f} points (tolerance {args.tolerance}): {'ok' if ok else 'FAIL'}")
    return ok


# --- time to target -------------------------------------------------------------------------


def run_time_to_target(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Train with the real `train()`; report its training seconds and the target's fate."""
    metrics = train(cfg, out_dir)
    epochs = metrics["epochs"]
    first = next((e for e in epochs if e["test_acc"] >= metrics["target_acc"]), None)
    report = {
        "model": metrics["model"],
        "params": metrics["params"],
        "device": metrics["device"],
        "epochs": len(epochs),
        "test_acc": metrics["test_acc"],
        "target_acc": metrics["target_acc"],
        "reached_target": metrics["reached_target"],
        "train_seconds": metrics["train_seconds"],
        # None: the trainer has no compilation step (torch.compile lost on CPU, see
        # docs/BENCHMARKS.md); a trainer that compiles would report it apart here.
        "compile_seconds": metrics.get("compile_seconds"),
        "eval_seconds": round(sum(e["eval_seconds"] for e in epochs), 3),
        "first_epoch_at_target": first and first["epoch"],
        "seconds_to_first_epoch_at_target": first
        and round(sum(e["seconds"] for e in epochs[: first["epoch"]]), 3),
    }
    plural = "" if report["epochs"] == 1 else "s"
    print(
        f"model {report['model']} ({report['params']:,} params), {report['epochs']} "
        f"epoch{plural} on {report['device']}"
    )
    print(
        f"final test accuracy {report['test_acc']:.2f}% (target {report['target_acc']}%): "
        f"{'reached' if report['reached_target'] else 'not reached'}"
    )
    compiled = report["compile_seconds"]
    print(
        f"training {report['train_seconds']:.1f} s, evaluation {report['eval_seconds']:.1f} s "
        "(not counted in training), "
        + ("no compilation" if compiled is None else f"compilation {compiled:.1f} s (not counted)")
    )
    if first is not None:
        print(
            f"first epoch at or above target: {first['epoch']} "
            f"({report['seconds_to_first_epoch_at_target']:.1f} s of training)"
        )
    if report["reached_target"]:
        print(f"time_to_target: {report['train_seconds']:.2f} s")
    else:
        print(f"time_to_target: not reached ({report['test_acc']:.2f}% < {report['target_acc']}%)")
    return report
