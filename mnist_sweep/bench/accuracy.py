"""--accuracy: one epoch by each path from the same start, in the same batch order;
the two test accuracies must agree within --tolerance."""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import DictConfig

from mnist_sweep.bench.project import project_run, with_changes
from mnist_sweep.bench.reference import reference_loader, reference_model, reference_steps
from mnist_sweep.run.optim import build_optimizer, build_scheduler, steps_per_epoch
from mnist_sweep.run.train import cpu_threads, eval_batch_size, evaluate


def run_accuracy(args: argparse.Namespace, cfg: DictConfig, device: torch.device) -> bool:
    """One epoch on a subset by each path, same start and batch order; True when they agree."""
    # The reference rotates with PIL, the project warps per batch; no augmentation
    # on either side leaves only the pipelines themselves to compare.
    cfg = with_changes(cfg, data__train_subset=args.subset, data__augment__strength=0.0)
    batch_size = cfg.data.batch_size
    proj = project_run(cfg, device, epochs=1)
    # train_epoch's first draw from this generator is its shuffle: replay it for (a).
    order = torch.randperm(
        proj.data.n_train,
        device=device,
        generator=torch.Generator(device=device).manual_seed(cfg.trainer.seed),
    ).cpu()

    with cpu_threads(cfg.trainer.get("threads")):
        t0 = time.perf_counter()
        proj.epoch()
        proj_seconds = time.perf_counter() - t0
        eval_bs = eval_batch_size(cfg.data, device)
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
