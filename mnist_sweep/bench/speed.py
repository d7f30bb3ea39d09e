"""Speed (the default mode): images/s of the reference pipeline and of the project's
path, same model, optimizer and batch size, in interleaved rounds; `speedup: <b/a>`."""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
from omegaconf import DictConfig

from mnist_sweep.bench.reference import endless, reference_loader, reference_model, reference_steps
from mnist_sweep.bench.rounds import concurrent_trainings, median_ratio, one_training
from mnist_sweep.errors import UserError
from mnist_sweep.run.optim import build_optimizer
from mnist_sweep.run.train import cpu_threads, sync


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
    with project(cfg, device, args) as (described, proj_warmup, project_round):
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
    speedup = median_ratio(proj_rates, ref_rates)
    print(f"(a) reference DataLoader pipeline: {statistics.median(ref_rates):,.0f} images/s")
    what = "project path" if args.concurrent == 1 else f"project path, {args.concurrent} at once"
    print(f"(b) {what}: {statistics.median(proj_rates):,.0f} images/s")
    print(f"speedup: {speedup:.2f}")
    return speedup
