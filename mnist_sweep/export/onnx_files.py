"""The net as ONNX files (float32, and int8 by static quantization), run with onnxruntime.

The export uses torch's TorchScript-based exporter (`dynamo=False`): for a plain
nn.Sequential of convolutions it needs no onnxscript, and it folds each
BatchNorm into the convolution before it. The opset is fixed, so that the file
a given torch writes does not change with the default of another.

The int8 file is onnxruntime's post-training static quantization: weights per
output channel (BatchNorm folding gives each channel its own scale) and
activations per tensor, both signed 8-bit, in QDQ format, with activation
ranges calibrated (min-max) on training images.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mnist_sweep.errors import UserError
from mnist_sweep.run.model import IMAGE_SIZE, IN_CHANNELS
from mnist_sweep.run.record import atomic_write

OPSET = 17
INPUT, OUTPUT = "image", "logits"
INSTALL_HINT = "install the export extra: pip install 'mnist-sweep[export]'"


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"onnxruntime is not installed; {INSTALL_HINT}") from None
    return onnxruntime


def write_onnx(model: nn.Module, path: Path) -> None:
    """The net, in eval mode on the CPU, as a float32 ONNX file taking a batch of any size."""
    model = model.eval()
    image = torch.zeros(1, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)

    def export(tmp: Path) -> None:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of the dynamo one;
            # it is chosen on purpose (module docstring).
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                (image,),
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            )

    atomic_write(path, export)


def write_int8(fp32: Path, path: Path, calibration: Tensor, batch_size: int = 100) -> None:
    """Quantize the float32 ONNX file `fp32` to int8 at `path`, calibrated on `calibration`
    (normalised training images, (N, 1, 28, 28))."""
    _onnxruntime()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        """The training images, one batch per call; the quantizer reads them once."""

        def __init__(self) -> None:
            self.starts = iter(range(0, calibration.shape[0], batch_size))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self.starts, None)
            if start is None:
                return None
            return {INPUT: calibration[start : start + batch_size].numpy()}

    reader = Calibration()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference and graph optimisation first, as onnxruntime recommends
        # for static quantization.
        quant_pre_process(str(fp32), str(prepared))
        atomic_write(
            path,
            lambda out: quantize_static(
                str(prepared),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            ),
        )


def onnx_predict(
    path: Path, images: Tensor, threads: int | None = 1, batch_size: int = 1000
) -> Tensor:
    """The class an ONNX file gives each image, run with onnxruntime on the CPU."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, images.shape[0], batch_size):
        (logits,) = session.run([OUTPUT], {INPUT: images[start : start + batch_size].numpy()})
        out.append(torch.from_numpy(logits).argmax(1))
    return torch.cat(out)


def weight_bytes(path: Path) -> int:
    """What an ONNX file's stored tensors (weights, biases, quantization scales) take, in
    bytes: the file less its graph's description."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


def onnxruntime_version() -> str:
    return str(_onnxruntime().__version__)
