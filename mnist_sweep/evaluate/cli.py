"""Re-evaluate a run folder's checkpoint against what its metrics.json records.

    python -m mnist_sweep.evaluate RUN_DIR
    python -m mnist_sweep.evaluate RUN_DIR --images DIR

The first form rebuilds the net (`load_model`), evaluates it on the test set,
and on the validation split when the run held one out, as training did, and
prints each accuracy next to the one metrics.json records for the epoch the
checkpoint is from; it exits 1 when they differ by an image. The second prints
the net's prediction for every 28x28 PNG in DIR.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from mnist_sweep.errors import DataError, UserError
from mnist_sweep.errors import report as report_error
from mnist_sweep.evaluate.images import read_images
from mnist_sweep.evaluate.measure import (
    Split,
    data_config,
    evaluation_device,
    load_splits,
    measure,
    recorded_epoch,
)
from mnist_sweep.run.data import normalise
from mnist_sweep.run.load import TrainedNet, load_trained, run_folder_parser
from mnist_sweep.run.model import count_params


def check(trained: TrainedNet, device_choice: str, data_root: Path | None) -> int:
    """Print each split's accuracy beside the recorded one; 1 if any differ, else 0."""
    metrics, row = recorded_epoch(trained.run_dir, trained.epoch)
    device = evaluation_device(device_choice, metrics.device)
    try:
        data = load_splits(trained, device, data_root)
    except DataError as e:
        raise DataError(f"{e} (for this command: --data-root DIR)") from None
    splits = measure(trained, data, device)
    print(
        f"{trained.run_dir}: {metrics.model}, {count_params(trained.model):,} params, "
        f"weights of epoch {trained.epoch} of {metrics.epochs_planned} ({metrics.status}), "
        f"evaluated on {device.type}"
    )
    recorded = {"test": row.test_acc, "val": row.val_acc}
    wrong = []
    for split in splits:
        before = recorded[split.name]
        verdict = "agrees" if _same(split, before) else "DIFFERS"
        shown = "not recorded" if before is None else f"{before:.2f}%"
        print(
            f"  {split.name:<4} {split.accuracy:6.2f}% ({split.correct:,} of "
            f"{split.labels.shape[0]:,})   metrics.json: {shown}   {verdict}"
        )
        if verdict != "agrees":
            wrong.append((split, before))
    for split, before in wrong:
        where = ""
        if (device.type == "cpu") != (metrics.device == "cpu"):
            where = (
                f" (trained on {metrics.device}, evaluated on {device.type}: "
                "a near-tie may round the other way)"
            )
        shown = "no figure" if before is None else f"{before:.2f}%"
        print(
            f"error: {split.name} accuracy {split.accuracy:.2f}% disagrees with metrics.json's "
            f"{shown} for epoch {trained.epoch}{where}",
            file=sys.stderr,
        )
    return 1 if wrong else 0


def _same(split: Split, recorded: float | None) -> bool:
    if recorded is None:
        return False
    return round(recorded * split.labels.shape[0] / 100) == split.correct


def predict_images(trained: TrainedNet, folder: Path, invert: bool) -> None:
    """One line per PNG: the file, the digit, and the net's probability for it."""
    paths, images = read_images(folder, invert)
    data = data_config(trained)
    with torch.inference_mode():
        probs = trained.model(normalise(images, data.mean, data.std)).softmax(1)
    confidence, digits = probs.max(1)
    width = max(len(p.name) for p in paths)
    for path, digit, p in zip(paths, digits.tolist(), confidence.tolist(), strict=True):
        print(f"{path.name:<{width}}  {digit}  ({p * 100:.1f}%)")


def build_parser() -> argparse.ArgumentParser:
    p = run_folder_parser("python -m mnist_sweep.evaluate", __doc__.splitlines()[0])
    p.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="instead: predict every 28x28 PNG in DIR (light digit on dark, as MNIST)",
    )
    p.add_argument("--invert", action="store_true", help="the PNGs are dark on light (ink)")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto (default): the kind of device the run trained on, when there is one",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        trained = load_trained(args.run_dir)
        if args.images is not None:
            predict_images(trained, args.images, args.invert)
            return 0
        return check(trained, args.device, args.data_root)
    except UserError as e:
        return report_error(str(e))


if __name__ == "__main__":
    sys.exit(main())
