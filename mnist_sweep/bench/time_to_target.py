"""--time-to-target: the project's `train()`, its seconds of training to the target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mnist_sweep.run.train import train


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
