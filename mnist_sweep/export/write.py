"""Export a run folder's net: the ONNX files, and export.json describing them.

Every accuracy in export.json is measured, on the run's own test set: the
PyTorch net's as training evaluated it (in float32), and each ONNX file's with
onnxruntime, with the number of test images whose predicted class differs
from PyTorch's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mnist_sweep.evaluate.measure import load_splits, measure, recorded_epoch
from mnist_sweep.export import cost
from mnist_sweep.export.onnx_files import (
    INPUT,
    OPSET,
    OUTPUT,
    onnx_predict,
    onnxruntime_version,
    weight_bytes,
    write_int8,
    write_onnx,
)
from mnist_sweep.run.data import DeviceData
from mnist_sweep.run.load import load_trained
from mnist_sweep.run.record import write_json

FP32, INT8, REPORT = "model.onnx", "model.int8.onnx", "export.json"
CALIBRATION_IMAGES = 1000


@dataclass
class _Test:
    """The test set and PyTorch's predictions on it."""

    x: Tensor
    y: Tensor
    pytorch: Tensor

    def accuracy(self, predictions: Tensor) -> float:
        return int((predictions == self.y).sum()) * 100.0 / self.y.shape[0]


def _file(path: Path, test: _Test, threads: int | None, **about: Any) -> dict[str, Any]:
    predictions = onnx_predict(path, test.x, threads)
    return {
        "bytes": path.stat().st_size,
        "weight_bytes": weight_bytes(path),
        **about,
        "test_acc": test.accuracy(predictions),
        "differs_from_pytorch": int((predictions != test.pytorch).sum()),
    }


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    int8: bool = False,
    calibration_images: int = CALIBRATION_IMAGES,
    data_root: str | Path | None = None,
) -> dict[str, Any]:
    """Write model.onnx (and model.int8.onnx with `int8`) and export.json into `out_dir`
    (default: the run folder); returns what export.json holds."""
    trained = load_trained(run_dir)
    metrics, row = recorded_epoch(trained.run_dir, trained.epoch)
    out = Path(out_dir) if out_dir is not None else trained.run_dir
    cpu = torch.device("cpu")
    data: DeviceData = load_splits(trained, cpu, data_root)
    (split,) = (s for s in measure(trained, data, cpu, precision="32") if s.name == "test")
    test = _Test(data.test_x, data.test_y, split.predictions)
    threads = trained.cfg.trainer.get("threads")
    model = trained.model
    write_onnx(model, out / FP32)
    files = {FP32: _file(out / FP32, test, threads, weights="float32")}
    if int8:
        calibration = data.train_x[:calibration_images]
        write_int8(out / FP32, out / INT8, calibration)
        files[INT8] = _file(
            out / INT8,
            test,
            threads,
            weights="int8",
            activations="int8",
            calibration_images=calibration.shape[0],
        )
    mean, std = float(trained.cfg.data.mean), float(trained.cfg.data.std)
    report = {
        "run_dir": str(trained.run_dir),
        "model": metrics.model,
        "epoch": trained.epoch,
        "params": cost.count_params(model),
        "macs": cost.macs(model),
        "largest_layer_activations": cost.largest_activation(model),
        "input": {
            "name": INPUT,
            "shape": ["batch", 1, 28, 28],
            "dtype": "float32",
            "pixels": f"grey level / 255, minus {mean}, divided by {std}",
        },
        "output": {"name": OUTPUT, "shape": ["batch", 10]},
        "test_images": int(test.y.shape[0]),
        "metrics_test_acc": row.test_acc,
        "pytorch_test_acc": split.accuracy,
        "files": files,
        "opset": OPSET,
        "torch": str(torch.__version__),
        "onnxruntime": onnxruntime_version(),
    }
    write_json(out / REPORT, report)
    return report
