"""--variants: the project's path under other settings, against the config as given."""

from __future__ import annotations

import argparse
import statistics

import torch
from omegaconf import DictConfig

from mnist_sweep.bench.project import timed_epoch, warmed_run, with_changes
from mnist_sweep.bench.rounds import median_ratio, warmup_size


def run_variants(
    args: argparse.Namespace, cfg: DictConfig, variants: dict[str, DictConfig], device: torch.device
) -> dict[str, float]:
    """The project path under each variant config, interleaved with `cfg`; median ratios."""
    configs = {"as configured": cfg, **variants}
    images = args.batches * cfg.data.batch_size
    runs = {}
    for label, variant in configs.items():
        runs[label], warmup = warmed_run(
            with_changes(variant, data__train_subset=images),
            device,
            args.repeats + 1,
            warmup_size(args, variant),
        )
        print(f"warm-up {label}: {warmup:.1f} s")
    rates: dict[str, list[float]] = {label: [] for label in configs}
    for round_ in range(1, args.repeats + 1):
        for label, run in runs.items():
            rates[label].append(timed_epoch(run))
        print(f"round {round_}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()))
    base = rates["as configured"]
    ratios = {label: median_ratio(r, base) for label, r in rates.items()}
    for label, r in rates.items():
        print(
            f"{label}: {statistics.median(r):,.0f} images/s, {ratios[label]:.2f}x "
            f"(rounds {', '.join(f'{b / a:.2f}' for b, a in zip(r, base, strict=True))})"
        )
    return ratios
