"""`python -m mnist_sweep.bench`: the project's training path against the reference pipeline.

Each mode measures both sides in one process, interleaved, because the machines
this project runs on are shared: a figure taken at another moment is not
comparable.

speed (default)
    images/s of (a) the reference READMEs' pipeline (torchvision `MNIST` with
    per-sample PIL transforms behind a `DataLoader`, the net built from torch's
    stock layers, a plain step that reads `loss.item()` every batch) and (b) the
    project's own path (`build`, then `train_epoch`), same
    model, optimizer and batch size. `--concurrent N` runs (b) as N trainings at
    once (a sweep's trials sharing the machine) and counts their total. The last
    line is `speedup: <b/a>`, the median of the per-round ratios.
--time-to-target
    trains with the project's `train()` and reports the seconds of training
    (evaluation and compilation apart) and whether the final epoch reached
    `target_acc`.
--sweep-utilisation
    one small pruned sweep of unequal trials through the joblib launcher (see
    mnist_sweep/bench/sweep.py); prints its utilisation (job seconds over
    workers x wall) and trials per hour.
--stack 1,10,50
    K seeds of the config trained as one stacked run (trainer.seeds), for
    each K, against one solo run, in interleaved rounds: seconds per epoch,
    trainings per hour and the ratio to the solo run; writes --json (see
    mnist_sweep/bench/stack.py). --stand-in-teacher times a config whose
    teacher folder is missing with an untrained stand-in (bench/stand_in.py).
--accuracy
    one epoch on a training subset by each path, from the same initial weights,
    in the same batch order, without augmentation: the two test accuracies must
    agree within --tolerance, or the exit code is 1.

Extra positional arguments are Hydra overrides (`trainer.threads=null`,
`data.batch_size=256`, ...), applied to the composed config of every mode.

This module reads the arguments, composes the config and dispatches; the modes
are in modes.py (sweep utilisation in sweep.py), the two paths they time in
reference.py (a) and timing.py (b).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig

from mnist_sweep.bench.modes import run_accuracy, run_speed, run_time_to_target, run_variants
from mnist_sweep.config import compose_config
from mnist_sweep.errors import UserError
from mnist_sweep.run.build import resolve_device

SPEED_MODEL = "era_s6"  # the 17,430-param net whose reference epoch is timed


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m mnist_sweep.bench",
        description="Time the project's training path against the reference DataLoader pipeline.",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.threads=null")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--time-to-target", action="store_true", help="train() until the end; report seconds"
    )
    mode.add_argument(
        "--accuracy", action="store_true", help="check both paths reach the same accuracy"
    )
    mode.add_argument(
        "--sweep-utilisation",
        action="store_true",
        help="a small pruned sweep of unequal trials: how busy it keeps its --workers",
    )
    mode.add_argument(
        "--variants",
        nargs="+",
        metavar="OVERRIDES",
        help="time the project path under each quoted set of overrides against the config "
        "as given (no reference path), e.g. 'trainer.channels_last=false'",
    )
    mode.add_argument(
        "--stack",
        metavar="K,K,...",
        help="train K seeds as one stacked run, for each K, against one solo run",
    )
    p.add_argument(
        "--json", type=Path, default=Path("bench-stack.json"), help="--stack: the report file"
    )
    p.add_argument(
        "--stand-in-teacher",
        action="store_true",
        help="--stack: time with an untrained stand-in teacher when distill.teacher is missing",
    )
    p.add_argument("--batches", type=int, default=50, help="timed batches per path and round")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (a, b, a, b, ...)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches per path first")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--model",
        help=f"model preset (default: {SPEED_MODEL}; --time-to-target: the config's default)",
    )
    p.add_argument(
        "--concurrent",
        type=int,
        default=1,
        help="speed mode: run (b) as this many trainings at once, each in its own process "
        "(a sweep's trials sharing the machine); images/s is their total",
    )
    p.add_argument("--num-workers", type=int, default=2, help="reference DataLoader workers")
    p.add_argument(
        "--workers", type=int, default=2, help="--sweep-utilisation: trials at once (default 2)"
    )
    p.add_argument(
        "--reference-threads",
        type=int,
        help="intra-op threads of the reference path (default: torch's, as the READMEs ran)",
    )
    p.add_argument("--data-root", help="folder holding MNIST/raw (default: data.root)")
    p.add_argument("--target", type=float, help="--time-to-target: accuracy to reach (%%)")
    p.add_argument("--epochs", type=int, help="--time-to-target: trainer.epochs")
    p.add_argument(
        "--subset", type=int, default=60000, help="--accuracy: training images (one epoch)"
    )
    p.add_argument("--tolerance", type=float, default=0.5, help="--accuracy: allowed gap in points")
    p.add_argument("--out", type=Path, help="--time-to-target: run folder (default: temporary)")
    args = p.parse_args(argv)
    for name in ("batches", "repeats", "subset", "concurrent", "workers"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.warmup < 0 or args.num_workers < 0:
        p.error("--warmup and --num-workers must not be negative")
    if args.concurrent > 1 and (args.time_to_target or args.accuracy or args.variants):
        p.error("--concurrent times the speed mode only; drop it or the mode flag")
    if args.reference_threads is not None and args.reference_threads < 1:
        p.error("--reference-threads must be at least 1")
    return args


def build_config(args: argparse.Namespace, extra: Sequence[str] = ()) -> DictConfig:
    """Options first, then the positional overrides, then `extra`; the later win."""
    overrides = [f"trainer.device={args.device}", "trainer.progress=false"]
    model = args.model or (None if args.time_to_target or args.stack else SPEED_MODEL)
    if model:
        overrides.append(f"model={model}")
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.target is not None:
        overrides.append(f"target_acc={args.target}")
    if args.epochs is not None:
        overrides.append(f"trainer.epochs={args.epochs}")
    return compose_config([*overrides, *args.overrides, *extra])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sweep_utilisation:  # whole sweeps in their own processes: no config to build here
        from mnist_sweep.bench.sweep import run_sweep_utilisation

        data = [f"data.root={args.data_root}"] if args.data_root else []
        try:
            run_sweep_utilisation(args.workers, overrides=[*data, *args.overrides])
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        cfg = build_config(args)
        device = resolve_device(cfg.trainer.device)
        if args.time_to_target:
            with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
                run_time_to_target(cfg, args.out or Path(tmp))
            return 0
        if args.accuracy:
            return 0 if run_accuracy(args, cfg, device) else 1
        if args.stack:
            from mnist_sweep.bench.stack import run_stack
            from mnist_sweep.bench.stand_in import needs_stand_in, with_stand_in_teacher

            with tempfile.TemporaryDirectory(prefix="bench_teacher_") as tmp:
                if args.stand_in_teacher and needs_stand_in(cfg):
                    cfg = with_stand_in_teacher(cfg, Path(tmp))
                run_stack(args, cfg, args.json)
            return 0
        if args.variants:
            variants = {v: build_config(args, shlex.split(v)) for v in args.variants}
            run_variants(args, cfg, variants)
            return 0
        run_speed(args, cfg, device)
        return 0
    except (UserError, HydraException) as e:  # bad input: one line, as the trainer does
        print(f"error: {e}", file=sys.stderr)
        return 1
