"""The benchmark CLI's output and the pieces it times with.

No assertion here is about speed: timings on a shared machine belong in
docs/BENCHMARKS.md, never in a test. What is checked is that the printed figures
agree with each other and that both paths compute the same thing.
"""

from __future__ import annotations

import multiprocessing
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mnist_sweep.bench.cli import main, parse_args
from mnist_sweep.bench.modes import run_time_to_target
from mnist_sweep.bench.reference import reference_model
from mnist_sweep.bench.sweep import sweep_command
from mnist_sweep.bench.timing import _training_worker
from mnist_sweep.run import record
from mnist_sweep.run.model import Dropout, build_model
from mnist_sweep.run.record import RunRecord
from tests.conftest import REPO, compose_config

RATE = r"([\d,]+) images/s"


@pytest.fixture
def run_bench(data_root, capsys, monkeypatch) -> Callable[..., subprocess.CompletedProcess]:
    """`python -m mnist_sweep.bench ARGS` as its CLI runs it, in this process (the
    concurrent trainings it times start processes of their own): exit code and output."""
    monkeypatch.setenv("MNIST_DATA", str(data_root))
    monkeypatch.chdir(REPO)

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def _last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _check_one_round_speedup(out: str, project: str) -> None:
    """With one round, the speedup is that round's ratio and the printed (b) over (a)."""
    reference_rate = re.search(rf"^\(a\) reference DataLoader pipeline: {RATE}$", out, re.M)
    project_rate = re.search(rf"^\(b\) {re.escape(project)}: {RATE}$", out, re.M)
    speedup = re.search(r"^speedup: (\d+\.\d\d)$", out, re.M)
    assert reference_rate and project_rate and speedup, out
    assert re.search(rf"^round 1: .*, ratio {re.escape(speedup[1])}$", out, re.M), out
    a, b = (float(m[1].replace(",", "")) for m in (reference_rate, project_rate))
    # The rates are printed to the image, the speedup to the hundredth.
    rounding = 0.005 + (b / a) * (0.5 / a + 0.5 / b)
    assert float(speedup[1]) == pytest.approx(b / a, abs=rounding), out


@pytest.mark.slow
def test_speed_prints_both_rates_and_ends_with_the_speedup(run_bench):
    result = run_bench("--batches", "5", "--repeats", "1", "--warmup", "1", "--num-workers", "0")
    out = result.stdout
    assert "model era_s6, batch 128" in out
    assert re.fullmatch(r"speedup: \d+\.\d+", _last_line(result)), out
    _check_one_round_speedup(out, "project path")


@pytest.mark.slow
def test_variants_report_rate_ratio_and_the_test_pass_share(run_bench):
    result = run_bench(
        "--variants",
        "average=none",
        "--model",
        "tiny",
        "--batches",
        "4",
        "--repeats",
        "2",
        "--warmup",
        "1",
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    line = (
        r": ([\d,]+) images/s, (\d+\.\d\d)x \(rounds [\d., ]+\); "
        r"test pass (\d+\.\d\d) s, ([\d.]+)% of a 60,000-image epoch with it$"
    )
    base = re.search(r"^as configured" + line, out, re.M)
    variant = re.search(r"^average=none" + line, out, re.M)
    assert base and variant, out
    assert base[2] == "1.00" and float(variant[2]) > 0, out
    # The share follows from the printed rate and seconds (both rounded).
    rate, seconds, share = float(base[1].replace(",", "")), float(base[3]), float(base[4])
    if seconds > 0:
        expected = 100 * seconds / (60_000 / rate + seconds)
        assert share == pytest.approx(expected, rel=0.1, abs=0.05), out


@pytest.mark.slow
def test_time_to_target_reports_training_seconds_apart(run_bench, tmp_path):
    result = run_bench(
        "--time-to-target",
        "--target",
        "20",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        "data.train_subset=2000",
        "data.batch_size=64",
        "optimizer.lr=0.1",
    )
    out = result.stdout
    assert re.search(r"^model small \(4,882 params\), 1 epoch on .+$", out, re.M), out
    assert re.search(r"^final test accuracy [\d.]+% \(target 20.0%\): reached$", out, re.M), out
    seconds = r"^training [\d.]+ s, evaluation [\d.]+ s \(not counted in training\), "
    assert re.search(seconds + r"(no compilation|compilation [\d.]+ s)", out, re.M), out
    assert re.fullmatch(r"time_to_target: \d+\.\d+ s", _last_line(result)), out
    assert (tmp_path / "run" / record.METRICS).is_file()


@pytest.mark.slow
def test_concurrent_trainings_report_their_total_rate(run_bench):
    result = run_bench(
        *("--batches", "3", "--repeats", "1", "--warmup", "1", "--num-workers", "0"),
        *("--concurrent", "2"),
    )
    out = result.stdout
    assert "(b) 2 trainings at once, 1 thread each" in out, out
    assert re.fullmatch(r"speedup: \d+\.\d+", _last_line(result)), out
    _check_one_round_speedup(out, "project path, 2 at once")


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


@pytest.mark.slow
def test_both_paths_train_identically_without_the_layout_change(run_bench):
    # Same weights, batch order and thread count, and no dropout (the two draw their
    # masks differently): only the data pipelines differ, and they must feed the
    # net the very same numbers.
    result = run_bench(
        "--accuracy",
        "--subset",
        "1024",
        "--num-workers",
        "0",
        "--reference-threads",
        "1",
        "--tolerance",
        "0",
        "trainer.channels_last=false",
        "trainer.threads=1",
        "dropout=none",
    )
    assert "(a) reference DataLoader pipeline: test accuracy" in result.stdout
    assert _last_line(result).startswith("accuracy gap: +0.00 points"), result.stdout
    assert _last_line(result).endswith(": ok")


def test_bad_override_is_one_line(capsys):
    assert main(["--batches", "1", "trainer.no_such_key=1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Could not override 'trainer.no_such_key'"), err


@pytest.mark.slow
def test_time_to_target_counts_only_training_seconds(quick_cfg, tmp_path: Path):
    cfg = quick_cfg("model=tiny", **{"data.train_subset": 1000, "trainer.epochs": 2})
    report = run_time_to_target(cfg, tmp_path)
    epochs = RunRecord.load(tmp_path).epochs
    assert report["epochs"] == 2
    assert report["train_seconds"] == pytest.approx(sum(e.seconds for e in epochs), abs=0.01)
    assert report["eval_seconds"] == pytest.approx(sum(e.eval_seconds for e in epochs))
    # Evaluation, and everything around the epochs, is outside the training seconds.
    assert report["train_seconds"] + report["eval_seconds"] < RunRecord.load(tmp_path).wall_seconds


def test_concurrent_is_refused_outside_the_speed_mode(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--concurrent", "2", "--accuracy"])
    assert exit_info.value.code == 2
    assert "--concurrent times the speed mode only" in capsys.readouterr().err


def test_utilisation_bench_queues_full_and_pruned_trials_in_turn(tmp_path):
    command = sweep_command(tmp_path / "s", 2, 6)
    (queued,) = [a for a in command if a.startswith("hydra.sweeper.enqueue=")]
    assert queued.count("optimizer.lr:0.1,") == 3 == queued.count("optimizer.lr:0.0,")
    assert "hydra.sweeper.n_jobs=2" in command and "hydra.launcher.n_jobs=2" in command
