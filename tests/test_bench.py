"""The benchmark CLI's output shape, and the speed settings' promise to change nothing computed.

No assertion here is about speed: timings on a shared machine belong in
docs/BENCHMARKS.md, never in a test.
"""

from __future__ import annotations

import multiprocessing
import re
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mnist_sweep.bench.cli import parse_args
from mnist_sweep.bench.reference import reference_model
from mnist_sweep.bench.rounds import _training_worker
from mnist_sweep.bench.time_to_target import run_time_to_target
from omegaconf import OmegaConf

from mnist_sweep.errors import UserError
from mnist_sweep.run import record
from mnist_sweep.run.build import cpu_threads, prepare_model
from mnist_sweep.run.model import Dropout, build_model
from mnist_sweep.run.record import RunRecord
from tests.conftest import REPO, compose_config, run_cli

RATE = r"([\d,]+) images/s"


def run_bench(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=REPO, timeout=timeout, module="mnist_sweep.bench")


def _last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_speed_prints_both_rates_and_ends_with_the_speedup(data_root):
    result = run_bench("--batches", "5", "--repeats", "1", "--warmup", "1", "--num-workers", "0")
    out = result.stdout
    assert re.search(rf"^\(a\) reference DataLoader pipeline: {RATE}$", out, re.M), out
    assert re.search(rf"^\(b\) project path: {RATE}$", out, re.M), out
    assert "model era_s6, batch 128" in out
    speedup = re.fullmatch(r"speedup: (\d+\.\d+)", _last_line(result))
    assert speedup, out
    assert float(speedup.group(1)) > 0


def test_time_to_target_reports_training_seconds_apart(data_root, tmp_path):
    result = run_bench(
        "--time-to-target",
        "--target", "20",
        "--epochs", "1",
        "--out", str(tmp_path / "run"),
        "data.train_subset=2000", "data.batch_size=64", "optimizer.lr=0.1",
    )  # fmt: skip
    out = result.stdout
    assert re.search(r"^model small \(4,882 params\), 1 epoch on .+$", out, re.M), out
    assert re.search(r"^final test accuracy [\d.]+% \(target 20.0%\): reached$", out, re.M), out
    seconds = r"^training [\d.]+ s, evaluation [\d.]+ s \(not counted in training\), "
    assert re.search(seconds + r"(no compilation|compilation [\d.]+ s)", out, re.M), out
    assert re.fullmatch(r"time_to_target: \d+\.\d+ s", _last_line(result)), out
    assert (tmp_path / "run" / record.METRICS).is_file()


def test_concurrent_trainings_report_their_total_rate(data_root):
    result = run_bench(
        "--batches", "3", "--repeats", "1", "--warmup", "1", "--num-workers", "0",
        "--concurrent", "2",
    )  # fmt: skip
    out = result.stdout
    assert "(b) 2 trainings at once, 1 thread each" in out, out
    assert re.search(rf"^\(b\) project path, 2 at once: {RATE}$", out, re.M), out
    assert re.fullmatch(r"speedup: \d+\.\d+", _last_line(result)), out


def test_a_failing_concurrent_training_reports_why(tmp_path):
    cfg = compose_config(["model=tiny", f"data.root={tmp_path}"])
    parent, child = multiprocessing.Pipe()
    _training_worker(OmegaConf.to_yaml(cfg), 1, 128, child)
    answer = parent.recv()
    assert isinstance(answer, str) and answer.startswith("DataError: MNIST not found"), answer


def test_the_reference_net_has_stock_layers_and_the_same_weights():
    cfg = compose_config(["model=era_s6"])
    torch.manual_seed(0)
    ours = build_model(cfg.model, cfg.dropout.p)
    torch.manual_seed(0)
    reference = reference_model(cfg, torch.device("cpu"))
    assert not any(isinstance(m, Dropout) for m in reference)
    assert sum(type(m) is torch.nn.Dropout for m in reference) == 6
    assert [type(m) for m in reference] == [
        torch.nn.Dropout if isinstance(m, Dropout) else type(m) for m in ours
    ]
    ours_state, reference_state = ours.state_dict(), reference.state_dict()
    assert ours_state.keys() == reference_state.keys()  # checkpoints load into either
    for name, tensor in ours_state.items():
        assert torch.equal(tensor, reference_state[name]), name


def test_both_paths_train_identically_without_the_layout_change(data_root):
    # Same weights, batch order and thread count, and no dropout (the two draw their
    # masks differently): only the data pipelines differ, and they must feed the
    # net the very same numbers.
    result = run_bench(
        "--accuracy", "--subset", "1024", "--num-workers", "0", "--reference-threads", "1",
        "--tolerance", "0", "trainer.channels_last=false", "trainer.threads=1", "dropout=none",
    )  # fmt: skip
    assert "(a) reference DataLoader pipeline: test accuracy" in result.stdout
    assert _last_line(result).startswith("accuracy gap: +0.00 points"), result.stdout
    assert _last_line(result).endswith(": ok")


def test_bad_override_is_one_line():
    result = run_bench("--batches", "1", "trainer.no_such_key=1")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_channels_last_changes_layout_not_results():
    cfg = compose_config(["model=era_s6"])
    # float64: the two layouts sum in different orders, and through six BatchNorm
    # layers float32 rounding alone moves these gradients by about 1e-3.
    x = torch.randn(16, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        trainer_cfg = {"channels_last": channels_last}
        net = build_model(cfg.model, 0.0).double()
        model = prepare_model(net, trainer_cfg, torch.device("cpu"))
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        results.append((loss.item(), model[0].weight.grad.clone()))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-9)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_dropout_keeps_the_same_distribution(dtype):
    torch.manual_seed(0)
    layer = Dropout(0.1)
    dropped = 6554 / 65536  # p on the 16-bit grid
    x = torch.ones(1_000_000, dtype=dtype, requires_grad=True)
    out = layer(x)
    kept = out != 0
    assert out.dtype == dtype
    assert kept.float().mean().item() == pytest.approx(1 - dropped, abs=0.002)
    # Survivors scaled by 1 / (1 - rate): the layer stays unbiased.
    expected = torch.tensor(1 / (1 - dropped), dtype=dtype)
    assert torch.equal(out[kept], expected.expand(int(kept.sum())))
    out.sum().backward()
    assert torch.equal(x.grad != 0, kept)  # the gradient flows through the same mask
    layer.eval()
    assert torch.equal(layer(x), x)


def test_cpu_dropout_mask_is_fresh_per_call_and_follows_the_layout():
    torch.manual_seed(0)
    layer = Dropout(0.5)
    x = torch.ones(8, 16, 6, 6).to(memory_format=torch.channels_last)
    first, second = layer(x), layer(x)
    assert first.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(first, second)
    # Every channel and position gets its own draw: no lane pattern repeats.
    kept = (first != 0).float()
    assert kept.mean(dim=(0, 2, 3)).min() > 0.25 and kept.mean(dim=(0, 1)).min() > 0.25
    torch.manual_seed(0)
    assert torch.equal(layer(x), first)  # seeded by torch's generator, like nn.Dropout


def test_cpu_threads_sets_restores_and_validates():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with cpu_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(UserError, match="trainer.threads"), cpu_threads(0):
        pass


def test_time_to_target_counts_only_training_seconds(quick_cfg, tmp_path: Path):
    cfg = quick_cfg("model=tiny", **{"data.train_subset": 1000, "trainer.epochs": 2})
    report = run_time_to_target(cfg, tmp_path)
    epochs = RunRecord.load(tmp_path).epochs
    assert report["epochs"] == 2
    assert report["train_seconds"] == pytest.approx(sum(e.seconds for e in epochs), abs=0.01)
    assert report["eval_seconds"] == pytest.approx(sum(e.eval_seconds for e in epochs))


def test_concurrent_is_refused_outside_the_speed_mode(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--concurrent", "2", "--accuracy"])
    assert exit_info.value.code == 2
    assert "--concurrent times the speed mode only" in capsys.readouterr().err
