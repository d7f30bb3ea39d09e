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
    one small pruned sweep run twice, with the sweeper's old blocking batches
    and with its asynchronous scheduler (see mnist_sweep/bench/sweep.py);
    prints each one's utilisation and wall time, then
    `utilisation: <old> -> <new>`.
--accuracy
    one epoch on a training subset by each path, from the same initial weights,
    in the same batch order, without augmentation: the two test accuracies must
    agree within --tolerance, or the exit code is 1.

Extra positional arguments are Hydra overrides (`trainer.threads=null`,
`data.batch_size=256`, ...), applied to the composed config of every mode.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import itertools
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from mnist_sweep.config import compose_config
from mnist_sweep.errors import UserError
from mnist_sweep.run.build import Run, build, cpu_threads, resolve_device
from mnist_sweep.run.data import DeviceData
from mnist_sweep.run.fit import evaluate, sync, train_epoch
from mnist_sweep.run.model import Dropout, build_model
from mnist_sweep.run.optim import build_optimizer, build_scheduler, steps_per_epoch
from mnist_sweep.run.train import train

SPEED_MODEL = "era_s6"  # the 17,430-param net whose reference epoch is timed
# The reference READMEs' normalisation and rotation, as they wrote them.
REF_MEAN, REF_STD = (0.1307,), (0.3081,)
REF_DEGREES = (-7.0, 7.0)


def _set(cfg: DictConfig, **changes: Any) -> DictConfig:
    """A copy of the config with dotted keys set (`data__train_subset=...`)."""
    cfg = copy.deepcopy(cfg)
    for key, value in changes.items():
        OmegaConf.update(cfg, key.replace("__", "."), value, merge=False)
    return cfg


def _median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of per-round ratios: a round's two figures share the machine's load."""
    return statistics.median(b / a for b, a in zip(numerators, denominators, strict=True))


# --- (a) the reference pipeline ---------------------------------------------------


def reference_loader(
    root: str | Path,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    augment: bool = True,
    subset: int | None = None,
    order: Tensor | None = None,
) -> DataLoader:
    """The READMEs' loader: torchvision MNIST, PIL transforms per sample, worker processes.

    `order` replaces the shuffle with a fixed sample order (the accuracy check
    feeds both paths the same batches).
    """
    steps: list[Any] = [transforms.RandomRotation(REF_DEGREES, fill=0)] if augment else []
    steps += [transforms.ToTensor(), transforms.Normalize(REF_MEAN, REF_STD)]
    dataset: Any = datasets.MNIST(str(root), train=True, transform=transforms.Compose(steps))
    if subset is not None:
        dataset = Subset(dataset, range(subset))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=order is None,
        sampler=None if order is None else order.tolist(),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        # Its own generator, so the loader leaves the global RNG (dropout's) alone.
        generator=torch.Generator().manual_seed(0),
    )


def reference_model(cfg: DictConfig, device: torch.device) -> nn.Module:
    """The same net with torch's stock layers, as the READMEs built it.

    The project's Dropout draws its CPU mask more cheaply than nn.Dropout (same
    distribution); the reference must pay what the READMEs paid. Seeded like
    `build`, so both start from the same weights.
    """
    torch.manual_seed(cfg.trainer.seed)
    model = build_model(cfg.model, cfg.dropout.p)
    for i, layer in enumerate(model):
        if isinstance(layer, Dropout):
            model[i] = nn.Dropout(layer.p)
    return model.to(device)


def endless(loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches forever: a new epoch (and its worker start-up) whenever one runs out."""
    while True:
        yield from loader


def reference_steps(
    model: nn.Module,
    batches: Iterator[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    count: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """The READMEs' training step, `count` times."""
    model.train()
    for x, y in itertools.islice(batches, count):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss.item()  # the READMEs print it on their tqdm bar every step


# --- (b) the project's path -----------------------------------------------------------


def project_run(cfg: DictConfig, epochs: int) -> Run:
    """The run as `train()` builds it, with a schedule planned for `epochs` epochs."""
    return build(_set(cfg, trainer__epochs=epochs))


def _first_batches(data: DeviceData, images: int) -> DeviceData:
    return dataclasses.replace(data, train_x=data.train_x[:images], train_y=data.train_y[:images])


# --- speed ------------------------------------------------------------------------------


# A timed round of the project side: images/s over `--batches` batches.
TimedRound = Callable[[], float]


@contextlib.contextmanager
def one_training(
    cfg: DictConfig, args: argparse.Namespace
) -> Iterator[tuple[str, float, TimedRound]]:
    """The project path as `train()` runs it: yields (description, warm-up s, timed round)."""
    images = args.batches * cfg.data.batch_size
    run, warmup = warmed_run(
        _set(cfg, data__train_subset=images), args.repeats + 1, _warmup_images(args, cfg)
    )
    with cpu_threads(cfg.trainer.get("threads")):
        count = torch.get_num_threads()
    yield f"{count} thread{_s(count)}", warmup, functools.partial(timed_epoch, run)


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
            trial = _set(cfg, data__train_subset=images, trainer__seed=cfg.trainer.seed + k)
            proc = context.Process(
                target=_training_worker,
                args=(
                    OmegaConf.to_yaml(trial, resolve=True),
                    args.repeats + 1,
                    _warmup_images(args, cfg),
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


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _warmup_images(args: argparse.Namespace, cfg: DictConfig) -> int:
    """--warmup batches (at least one, at most --batches) of the config's batch size."""
    return min(max(1, args.warmup), args.batches) * cfg.data.batch_size


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
            _set(variant, data__train_subset=images),
            args.repeats + 1,
            _warmup_images(args, variant),
        )
        print(f"warm-up {label}: {warmup:.1f} s")
    rates: dict[str, list[float]] = {label: [] for label in configs}
    for round_ in range(1, args.repeats + 1):
        for label, run in runs.items():
            rates[label].append(timed_epoch(run))
        print(f"round {round_}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()))
    base = rates["as configured"]
    ratios = {label: _median_ratio(r, base) for label, r in rates.items()}
    for label, r in rates.items():
        print(
            f"{label}: {statistics.median(r):,.0f} images/s, {ratios[label]:.2f}x "
            f"(rounds {', '.join(f'{b / a:.2f}' for b, a in zip(r, base, strict=True))})"
        )
    return ratios


# --- accuracy -----------------------------------------------------------------------------


def run_accuracy(args: argparse.Namespace, cfg: DictConfig, device: torch.device) -> bool:
    """One epoch on a subset by each path, same start and batch order; True when they agree."""
    # The reference rotates with PIL, the project warps per batch; no augmentation
    # on either side leaves only the pipelines themselves to compare.
    cfg = _set(cfg, data__train_subset=args.subset, data__augment__strength=0.0)
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


# --- command line ---------------------------------------------------------------------------


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
        help="a small pruned sweep with the old blocking batches, then the asynchronous "
        "scheduler: how busy each keeps its --workers",
    )
    mode.add_argument(
        "--variants",
        nargs="+",
        metavar="OVERRIDES",
        help="time the project path under each quoted set of overrides against the config "
        "as given (no reference path), e.g. 'trainer.channels_last=false'",
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
    model = args.model or (None if args.time_to_target else SPEED_MODEL)
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
        if args.variants:
            variants = {v: build_config(args, shlex.split(v)) for v in args.variants}
            run_variants(args, cfg, variants)
            return 0
        run_speed(args, cfg, device)
        return 0
    except (UserError, HydraException) as e:  # bad input: one line, as the trainer does
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
