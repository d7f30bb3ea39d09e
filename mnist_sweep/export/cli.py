"""Export a run folder's net to ONNX, with its size, cost and measured accuracy.

    python -m mnist_sweep.export RUN_DIR [--int8] [--out DIR]

Writes model.onnx (float32), with --int8 model.int8.onnx (post-training static
quantization calibrated on training images), and export.json: parameters,
multiply-accumulates per image, file sizes in bytes and each file's test
accuracy measured with onnxruntime. Exits 1 when the float32 file's accuracy
is not the PyTorch net's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnist_sweep.errors import DataError, UserError
from mnist_sweep.errors import report as report_error
from mnist_sweep.export.write import CALIBRATION_IMAGES, FP32, REPORT, export_run
from mnist_sweep.run.load import run_folder_parser


def summary(report: dict[str, Any]) -> list[str]:
    lines = [
        f"{report['model']} (epoch {report['epoch']}): {report['params']:,} params, "
        f"{report['macs']:,} MACs per image",
        f"  {'PyTorch':<16} {'':>14}  test {report['pytorch_test_acc']:.2f}%  "
        f"(metrics.json: {report['metrics_test_acc']:.2f}%)",
    ]
    for name, file in report["files"].items():
        differ = file["differs_from_pytorch"]
        same = "same predictions as PyTorch" if not differ else f"{differ:,} predictions differ"
        lines.append(
            f"  {name:<16} {file['bytes']:>8,} bytes  test {file['test_acc']:.2f}%  ({same})"
        )
    return lines


def build_parser() -> argparse.ArgumentParser:
    p = run_folder_parser("python -m mnist_sweep.export", __doc__.splitlines()[0])
    p.add_argument("--int8", action="store_true", help="also write model.int8.onnx")
    p.add_argument(
        "--calibration",
        type=int,
        default=CALIBRATION_IMAGES,
        metavar="N",
        help=f"training images that calibrate the int8 file (default {CALIBRATION_IMAGES:,})",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="where to write (default: RUN_DIR)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.calibration < 1:
        parser.error("--calibration must be at least 1")
    try:
        report = export_run(args.run_dir, args.out, args.int8, args.calibration, args.data_root)
    except DataError as e:
        return report_error(f"{e} (for this command: --data-root DIR)")
    except UserError as e:
        return report_error(str(e))
    print("\n".join(summary(report)))
    print(f"wrote {Path(report['run_dir']) if args.out is None else args.out}/{REPORT}")
    fp32 = report["files"][FP32]["test_acc"]
    if fp32 != report["pytorch_test_acc"]:
        print(
            f"error: {FP32} scores {fp32:.2f}% on the test set, the PyTorch net "
            f"{report['pytorch_test_acc']:.2f}%: the export does not compute the same net",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
