"""Using a trained net: load_model, `python -m mnist_sweep.evaluate` and
`python -m mnist_sweep.export`, on a short real run; a bad folder is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

import mnist_sweep
from mnist_sweep.errors import RunFolderError
from mnist_sweep.evaluate import cli as evaluate_cli
from mnist_sweep.evaluate.measure import predict
from mnist_sweep.export import cli as export_cli
from mnist_sweep.export.cost import largest_activation, macs
from mnist_sweep.export.write import FP32, INT8, REPORT, export_run
from mnist_sweep.run import record
from mnist_sweep.run.build import prepare_model
from mnist_sweep.run.data import load_mnist, prepare_data
from mnist_sweep.run.load import load_trained
from mnist_sweep.run.model import build_model
from mnist_sweep.run.record import RunRecord
from tests.conftest import DATA_ROOT, run_cli, run_in_process, short_run_cfg


@pytest.fixture(scope="module")
def test_set(data_root):
    data = prepare_data(short_run_cfg().data, torch.device("cpu"))
    return data.test_x, data.test_y


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "copy"))


def test_load_model_gives_the_net_training_shipped(trained, test_set):
    run_dir, shipped = trained.run_dir, trained.shipped
    model = mnist_sweep.load_model(run_dir)  # the public name
    assert isinstance(model, nn.Module) and not model.training
    ours, theirs = model.state_dict(), shipped.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k].cpu()) for k in ours)
    # The weights are the average: the live ones that training went on from differ.
    live = record.load_checkpoint(run_dir).resume.model
    assert any(not torch.equal(ours[k], live[k]) for k in ours)
    # The same predictions as the in-process net, in the same layout (channels_last).
    x = test_set[0][:2000]
    cfg = OmegaConf.load(run_dir / record.HYDRA_CONFIG)
    ours_laid_out = prepare_model(model, cfg.trainer, torch.device("cpu"))
    assert torch.equal(predict(ours_laid_out, x, 128), predict(shipped, x, 128))
    plain = mnist_sweep.load_model(run_dir)  # prepare_model laid `model` out in place
    with torch.no_grad():  # in torch's default layout, the same logits but for rounding
        assert torch.allclose(plain(x[:500]), shipped(x[:500]), atol=1e-4)


def test_evaluate_agrees_with_metrics_json(trained, capsys):
    run_dir = trained.run_dir
    assert evaluate_cli.main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    metrics = RunRecord.load(run_dir)
    test, val = out.splitlines()[1:]
    assert test.split()[:2] == ["test", f"{metrics.test_acc:.2f}%"] and test.endswith("agrees")
    assert val.split()[:2] == ["val", f"{metrics.val_acc:.2f}%"] and val.endswith("agrees")


def test_evaluate_exits_1_when_metrics_json_disagrees(trained, tmp_path, capsys):
    run_dir = _copy(trained.run_dir, tmp_path)
    metrics = RunRecord.load(run_dir)
    metrics.epochs[-1].test_acc += 0.01  # one test image more than the net gets right
    metrics.save(run_dir)
    assert evaluate_cli.main([str(run_dir)]) == 1
    captured = capsys.readouterr()
    assert "DIFFERS" in captured.out
    (line,) = captured.err.splitlines()
    assert line.startswith("error: test accuracy") and "disagrees with metrics.json's" in line


def _write_pngs(folder: Path, images: torch.Tensor, invert: bool = False) -> None:
    folder.mkdir()
    for i, image in enumerate(images):
        pixels = (255 - image if invert else image).numpy().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"digit_{i:02d}.png")


def test_evaluate_predicts_a_folder_of_png_digits(trained, tmp_path, capsys):
    run_dir = trained.run_dir
    images = load_mnist(DATA_ROOT)["test"][0][:12]
    model = mnist_sweep.load_model(run_dir)
    with torch.no_grad():
        expected = model(((images.float() / 255 - 0.1307) / 0.3081).unsqueeze(1)).argmax(1)
    _write_pngs(tmp_path / "light", images)
    _write_pngs(tmp_path / "ink", images, invert=True)  # dark digits on a light ground
    for folder, extra in (("light", []), ("ink", ["--invert"])):
        assert evaluate_cli.main([str(run_dir), "--images", str(tmp_path / folder), *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[0] for line in lines] == [f"digit_{i:02d}.png" for i in range(12)]
        assert [int(line.split()[1]) for line in lines] == expected.tolist()
    Image.new("L", (32, 32)).save(tmp_path / "light" / "big.png")
    assert evaluate_cli.main([str(run_dir), "--images", str(tmp_path / "light")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "big.png is 32x32 pixels" in line and "resize it" in line


def _onnx_predictions(path: Path, x: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(logits).argmax(1)


def _macs_by_hooks(model: nn.Module) -> int:
    """Multiply-accumulates of the convolutions and linear layers, counted from their
    output sizes: a count independent of torch's FlopCounterMode."""
    total = 0

    def count(layer: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += output.numel() * layer.in_channels // layer.groups * kh * kw
        elif isinstance(layer, nn.Linear):
            total += output.numel() * layer.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for hook in hooks:
        hook.remove()
    return total


def test_export_writes_an_onnx_file_that_scores_as_pytorch(trained, test_set, tmp_path):
    run_dir = trained.run_dir
    report = export_run(run_dir, tmp_path)
    assert json.loads((tmp_path / REPORT).read_text()) == report
    assert not (tmp_path / INT8).exists()
    model = mnist_sweep.load_model(run_dir)
    metrics = RunRecord.load(run_dir)
    # The ONNX file, run here with onnxruntime directly: PyTorch's class for every test image.
    x, y = test_set
    onnx_classes = _onnx_predictions(tmp_path / FP32, x)
    assert torch.equal(onnx_classes, predict(model, x, 500))
    accuracy = int((onnx_classes == y).sum()) * 100.0 / y.shape[0]
    fp32 = report["files"][FP32]
    assert fp32["test_acc"] == accuracy == report["pytorch_test_acc"] == metrics.test_acc
    assert fp32["differs_from_pytorch"] == 0
    assert fp32["bytes"] == (tmp_path / FP32).stat().st_size
    # 4,882 params, less BatchNorm's 2 x 56 (folded into the 56 channels of the
    # convolutions before it, which gain a bias each), in 4 bytes each.
    assert fp32["weight_bytes"] == (4882 - 2 * 56 + 56) * 4 < fp32["bytes"]
    assert report["params"] == 4882 == metrics.params
    assert report["macs"] == _macs_by_hooks(model) == macs(model)
    assert report["largest_layer_activations"] == largest_activation(model) > 0
    assert report["epoch"] == 2 and report["test_images"] == 10000


@pytest.mark.slow
def test_int8_export_is_smaller_and_its_accuracy_is_measured(trained, test_set, tmp_path):
    run_dir = trained.run_dir
    report = export_run(run_dir, tmp_path, int8=True, calibration_images=300)
    int8, fp32 = report["files"][INT8], report["files"][FP32]
    x, y = test_set
    onnx_classes = _onnx_predictions(tmp_path / INT8, x)
    assert int8["test_acc"] == int((onnx_classes == y).sum()) * 100.0 / y.shape[0]
    assert int8["calibration_images"] == 300
    assert int8["bytes"] < fp32["bytes"] and int8["weight_bytes"] * 3 < fp32["weight_bytes"]
    # Close to float32 on this net: a net at about 73% keeps many test images near a
    # decision boundary, and onnxruntime's int8 kernels round differently from one CPU
    # to another; broken quantization would land near chance (10%).
    assert abs(int8["test_acc"] - fp32["test_acc"]) < 15


def test_export_cli_prints_the_figures(trained, tmp_path, capsys):
    run_dir = trained.run_dir
    assert export_cli.main([str(run_dir), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "4,882 params" in out and "MACs per image" in out
    assert "model.onnx" in out and "same predictions as PyTorch" in out
    assert f"wrote {tmp_path}/{REPORT}" in out


# --- bad folders: one line each ---------------------------------------------------------


def _damage(run_dir: Path, how: str) -> None:
    config = run_dir / record.HYDRA_CONFIG
    if how == "no config":
        shutil.rmtree(run_dir / record.HYDRA_DIR)
    elif how == "no checkpoint":
        (run_dir / record.CHECKPOINT).unlink()
    elif how == "corrupt checkpoint":
        (run_dir / record.CHECKPOINT).write_bytes(b"not a checkpoint")
    elif how == "corrupt config":
        config.write_text("model: [unclosed\n")
    elif how in ("wider net", "other padding"):
        cfg = OmegaConf.load(config)
        cfg.model.w1, cfg.model.pad1 = (10, 0) if how == "wider net" else (8, 1)
        OmegaConf.save(cfg, config)
    elif how == "weights of another net":
        net = build_model({"blocks": [{"widths": [4]}], "head": "gap"})
        checkpoint = record.load_checkpoint(run_dir)
        checkpoint.state_dict = net.state_dict()
        record.save_checkpoint(run_dir, checkpoint)


BAD = [
    ("no config", r"is not a run folder \(no .hydra/config.yaml\)"),
    ("no checkpoint", r"checkpoint.pt is missing"),
    ("corrupt checkpoint", r"checkpoint.pt is unreadable or corrupt"),
    ("corrupt config", r"config.yaml is unreadable or corrupt"),
    ("wider net", r"trained as another net than .*config.yaml describes \(model.blocks, model.w1 "),
    # Same weight shapes, another net: only the two configs tell.
    ("other padding", r"trained as another net than .*\(model.blocks, model.pad1 differ\)"),
    ("weights of another net", r"checkpoint.pt does not fit the net .* \(4,882 params\)"),
]


@pytest.mark.parametrize(("how", "message"), BAD, ids=[how for how, _ in BAD])
def test_a_damaged_run_folder_is_one_clear_error(trained, tmp_path, capsys, how, message):
    run_dir = _copy(trained.run_dir, tmp_path)
    _damage(run_dir, how)
    with pytest.raises(RunFolderError, match=message):
        mnist_sweep.load_model(run_dir)
    assert evaluate_cli.main([str(run_dir)]) == 1
    assert export_cli.main([str(run_dir), "--out", str(tmp_path / "out")]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    with pytest.raises(RunFolderError, match="nowhere is not a folder"):
        mnist_sweep.load_model(tmp_path / "nowhere")
    assert evaluate_cli.main([str(tmp_path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: {tmp_path} is not a run folder (no .hydra/config.yaml); give the folder a "
        "training wrote (outputs/runs/<date>/<time>_<model>/)"
    )


def test_evaluate_needs_metrics_json(trained, tmp_path, capsys):
    run_dir = _copy(trained.run_dir, tmp_path)
    (run_dir / record.METRICS).unlink()
    assert mnist_sweep.load_model(run_dir) is not None  # the net alone does not need it
    assert evaluate_cli.main([str(run_dir)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("metrics.json is missing")


@pytest.mark.slow
def test_train_evaluate_and_export_as_a_user_does(tmp_path, data_root, capsys):
    run_dir = tmp_path / "run"
    # The training as its command line runs it (in this process: test_cli starts it as
    # one); then evaluate and export as processes, as a user starts them.
    run_in_process(
        tmp_path,
        "model=tiny",
        "data.train_subset=1000",
        "trainer.epochs=1",
        "trainer.device=cpu",
        f"hydra.run.dir={run_dir}",
    )
    evaluated = run_cli(str(run_dir), cwd=tmp_path, module="mnist_sweep.evaluate")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "agrees" in evaluated.stdout
    exported = run_cli(str(run_dir), "--int8", cwd=tmp_path, module="mnist_sweep.export")
    assert exported.returncode == 0, exported.stderr
    report = json.loads((run_dir / REPORT).read_text())
    assert report["files"][FP32]["test_acc"] == RunRecord.load(run_dir).test_acc
    assert (run_dir / FP32).is_file() and (run_dir / INT8).is_file()
    for cli in (evaluate_cli, export_cli):  # what `python -m` runs, in this process
        assert cli.main([str(tmp_path / "nowhere")]) == 1
        err = capsys.readouterr().err
        assert err.splitlines() == [f"error: {tmp_path / 'nowhere'} is not a folder"]


def test_the_teacher_is_loaded_by_load_model(trained, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "mnist_sweep.run.distill.load_model", lambda d: calls.append(d) or load_trained(d).model
    )
    from mnist_sweep.run.distill import load_teacher

    teacher = load_teacher(OmegaConf.create({"teacher": str(trained.run_dir)}))
    assert calls == [Path(trained.run_dir).resolve()]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
