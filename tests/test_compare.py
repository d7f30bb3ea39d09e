"""`python -m mnist_sweep.compare`: run folders built by hand (healthy and broken), plus one
real two-job multirun."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState, create_trial

from mnist_sweep import plots, sweep_files
from mnist_sweep.compare import cli, discover, figures, layout, runs, verdict
from mnist_sweep.run import record
from mnist_sweep.run.record import RunRecord, RunStatus
from mnist_sweep.search import report
from mnist_sweep.search.trial_result import TrialResult
from tests.conftest import make_record, run_in_process

PNG = b"\x89PNG\r\n\x1a\n"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # exited and reaped: no such process now


DEAD_PID = _dead_pid()


@pytest.fixture(autouse=True)
def _figures_only_where_looked_at(request, monkeypatch):
    """Drawing pareto.png and curves.png is most of what compare costs; the tests about
    the table and comparison.csv skip it, the ones marked `draws` look at the figures."""
    if request.node.get_closest_marker("draws") is None:
        monkeypatch.setattr(figures, "write_plots", lambda *args, **kwargs: None)


def make_run(
    root: Path,
    name: str,
    overrides: list[str],
    *,
    params: int = 1000,
    accs: list[float] | None = None,
    status: RunStatus | None = RunStatus.COMPLETED,
    wall: float = 10.0,
    target: float = 99.4,
    model: str = "small",
    error: str | None = None,
    host: str | None = None,
    pid: int | None = None,
    trial: int | None = None,
) -> Path:
    """A run folder as Hydra and train.py leave it (`trial`: the sweep trial it ran for);
    status=None leaves out metrics.json."""
    run = root / name
    (run / record.HYDRA_DIR).mkdir(parents=True)
    (run / record.HYDRA_OVERRIDES).write_text(yaml.safe_dump(overrides))
    config = {"model": {"name": model}, "trainer": {"epochs": 3, "seed": 0}, "target_acc": target}
    (run / record.HYDRA_CONFIG).write_text(yaml.safe_dump(config))
    hydra: dict = {"runtime": {"choices": {"model": model, "optimizer": "sgd"}}}
    if trial is not None:
        hydra["job"] = {"name": "train", record.SWEEP_TRIAL: trial}
    (run / record.HYDRA_RUNTIME).write_text(yaml.safe_dump({"hydra": hydra}))
    if status is not None:
        make_record(
            accs or [],
            status=status,
            params=params,
            target=target,
            model=model,
            wall=wall,
            error=error,
            host=host,
            pid=pid,
        ).save(run)
    return run


DIVERGED = "training diverged in epoch 1 (train loss is nan); lower optimizer.lr"


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A multirun folder with one run in every state, plus two broken folders."""
    root = tmp_path / "multiruns" / "2026-01-01" / "12-00-00"
    common = ["data.train_subset=4000", "trainer.epochs=3"]
    make_run(
        root,
        "0",
        ["model=tiny", "optimizer.lr=0.1", *common],
        params=1046,
        accs=[97.0, 98.5, 98.9],
        wall=30.0,
        model="tiny",
    )
    make_run(
        root,
        "1",
        ["model=small", "optimizer.lr=0.1", *common],
        params=4882,
        accs=[98.0, 99.5, 99.45],
        wall=20.0,
    )
    make_run(
        root,
        "2",
        ["model=medium", "optimizer.lr=0.05", *common],
        params=14678,
        accs=[99.0, 99.6, 99.55],
        wall=50.0,
        model="medium",
    )
    make_run(
        root,
        "3",
        ["model=small", "optimizer.lr=0.5", *common],
        params=4882,
        accs=[90.0],
        status=RunStatus.PRUNED,
        wall=5.0,
    )
    make_run(
        root,
        "4",
        ["model=small", "optimizer.lr=9.0", *common],
        params=4882,
        accs=[],
        status=RunStatus.FAILED,
        wall=1.0,
        error=DIVERGED,
    )
    # Killed mid-run: its process is gone.
    make_run(
        root,
        "5",
        ["model=medium", "optimizer.lr=0.1", *common],
        params=14678,
        accs=[99.1],
        status=RunStatus.RUNNING,
        wall=15.0,
        model="medium",
        pid=DEAD_PID,
    )
    make_run(root, "6", ["model=small", "optimizer.lr=0.2", *common], status=None)
    (make_run(root, "7", ["model=small", *common]) / record.METRICS).write_text('{"params": 1')
    broken = make_run(root, "8", ["model=small", *common])
    (broken / record.HYDRA_OVERRIDES).unlink()
    (root / "multirun.yaml").write_text("hydra: {}\n")  # a sweep's own files are no run
    (root / "winner.json").write_text("{}\n")
    return root


def compare_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_every_state_gets_its_status_and_broken_folders_one_warning_each(sweep, capsys):
    code, out, err = compare_cli(capsys, sweep)
    assert code == 0
    rows = {r["run"]: r for r in read_csv(sweep / "comparison.csv")}
    assert {k: v["status"] for k, v in rows.items()} == {
        "0": "below target",
        "1": "target met",
        "2": "target met",
        "3": "pruned",
        "4": "failed",
        "5": "incomplete",
        "6": "incomplete",
    }
    assert rows["1"]["params"] == "4882"
    assert float(rows["1"]["test_acc"]) == 99.45  # final epoch, not the best one
    assert float(rows["1"]["best_epoch_test_acc"]) == 99.5
    assert rows["1"]["best_epoch"] == "2"
    assert rows["0"]["epochs_run"] == "3" and rows["6"]["epochs_run"] == "0"
    overrides = "model=small optimizer.lr=0.1 data.train_subset=4000 trainer.epochs=3"
    assert rows["1"]["overrides"] == overrides
    assert Path(rows["1"]["run_dir"]) == (sweep / "1").resolve()
    warnings = err.strip().splitlines()[:-1]  # the last line says where the files went
    assert len(warnings) == 2
    assert warnings[0].startswith("warning: ") and str(sweep / "7") in warnings[0]
    assert "metrics.json" in warnings[0]
    assert str(sweep / "8") in warnings[1] and "overrides.yaml is missing" in warnings[1]
    for status in ("target met", "below target", "pruned", "failed", "incomplete"):
        assert status in out
    assert "best-epoch" in out
    assert f"4 failed: {DIVERGED}" in " ".join(out.split())  # why, under the table


def test_running_runs_are_told_from_killed_ones(tmp_path, capsys):
    root = tmp_path / "runs"
    running = RunStatus.RUNNING
    make_run(root, "alive", ["model=small"], accs=[97.0], status=running)  # this very process
    make_run(root, "killed", ["model=tiny"], accs=[95.0], status=running, pid=DEAD_PID)
    fresh = make_run(
        root, "remote-fresh", ["model=medium"], accs=[96.0], status=running, host="gpu-node-7"
    )
    stale = make_run(
        root, "remote-stale", ["model=era_s6"], accs=[96.0], status=running, host="gpu-node-7"
    )
    old = time.time() - 3600
    os.utime(stale / record.METRICS, (old, old))
    assert fresh.exists()
    code, out, _ = compare_cli(capsys, root)
    assert code == 0
    rows = {r["run"]: r["status"] for r in read_csv(root / "comparison.csv")}
    assert rows == {
        "alive": "running",
        "killed": "incomplete",
        "remote-fresh": "running",
        "remote-stale": "incomplete",
    }


def test_a_killed_sweep_trial_is_failed_with_the_reason_its_sweep_recorded(tmp_path, capsys):
    sweep = tmp_path / "sweeps" / "smallest-1a2b3c4d"
    make_run(sweep, "trial_000", ["model.w1=3"], accs=[97.0], trial=0)
    killed = make_run(
        sweep,
        "trial_001",
        ["model.w1=4"],
        accs=[95.0],
        status=RunStatus.RUNNING,
        pid=DEAD_PID,
        trial=1,
    )
    # Killed too, but the sweep's report has no word on it (not written since).
    make_run(
        sweep,
        "trial_002",
        ["model.w1=5"],
        accs=[96.0],
        status=RunStatus.RUNNING,
        pid=DEAD_PID,
        trial=2,
    )
    reason = "interrupted: the sweep process died"
    study = optuna.create_study(direction="minimize")
    study.add_trial(create_trial(value=1000, user_attrs=TrialResult(test_acc=97.0).attrs()))
    failed = TrialResult(fail_reason=reason).attrs()
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=failed))
    report.write_trials_csv(study, sweep / sweep_files.TRIALS_CSV)
    code, out, _ = compare_cli(capsys, sweep)
    assert code == 0
    rows = {r["run"]: r["status"] for r in read_csv(sweep / "comparison.csv")}
    assert rows == {"trial_000": "below target", "trial_001": "failed", "trial_002": "incomplete"}
    assert f"trial_001 failed: {reason}" in out
    assert "trial_002 failed" not in out
    # compare only reads: the run's own record still says what its process last wrote.
    assert RunRecord.load(killed).status is RunStatus.RUNNING


def test_only_differing_overrides_become_columns(sweep, capsys):
    compare_cli(capsys, sweep)
    header = next(csv.reader((sweep / "comparison.csv").open()))
    assert header[:3] == ["run", "model", "optimizer.lr"]
    assert "data.train_subset" not in header and "trainer.epochs" not in header
    rows = {r["run"]: r for r in read_csv(sweep / "comparison.csv")}
    assert rows["2"]["model"] == "medium" and rows["2"]["optimizer.lr"] == "0.05"
    assert rows["6"]["model"] == "small" and rows["6"]["optimizer.lr"] == "0.2"


def test_a_run_on_the_default_shows_the_value_it_ran_with(tmp_path, capsys):
    make_run(tmp_path, "a", ["model=tiny", "trainer.epochs=3"], accs=[99.0], model="tiny")
    make_run(tmp_path, "b", ["trainer.epochs=3"], accs=[99.0], model="small")
    make_run(tmp_path, "c", ["model=small", "trainer.epochs=3"], accs=[99.0], model="small")
    assert cli.main([str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "comparison.csv")
    assert [(r["run"], r["model"]) for r in rows] == [("a", "tiny"), ("b", "small"), ("c", "small")]
    assert "trainer.epochs" not in rows[0]
    assert cli.main([str(tmp_path / "b"), str(tmp_path / "c"), "--out", str(tmp_path)]) == 0
    assert "model" not in read_csv(tmp_path / "comparison.csv")[0]  # both ran small


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("params", ["0", "1", "3", "4", "2", "5"]),  # ties: the more accurate run first
        ("acc", ["2", "1", "5", "0", "3", "4"]),
        ("time", ["4", "3", "5", "1", "0", "2"]),
    ],
)
def test_sort(sweep, capsys, sort, order):
    assert cli.main([str(sweep), "--sort", sort]) == 0
    runs = [r["run"] for r in read_csv(sweep / "comparison.csv")]
    assert runs[:-1] == order  # the run with no metrics.json sorts last
    assert runs[-1] == "6"


def test_default_sort_is_params_ascending(sweep, capsys):
    compare_cli(capsys, sweep)
    params = [r["params"] for r in read_csv(sweep / "comparison.csv")]
    assert params == ["1046", "4882", "4882", "4882", "14678", "14678", ""]


def test_target_filters_and_sets_the_status(sweep, capsys):
    code, out, _ = compare_cli(capsys, sweep, "--target", "99.5", "--sort", "acc")
    assert code == 0
    rows = read_csv(sweep / "comparison.csv")
    assert [(r["run"], r["status"]) for r in rows] == [("2", "target met")]
    compare_cli(capsys, sweep, "--target", "98.9")
    rows = read_csv(sweep / "comparison.csv")
    assert {r["run"]: r["status"] for r in rows} == {
        "0": "target met",  # 98.9 meets a target of 98.9, below its own 99.4
        "1": "target met",
        "2": "target met",
        "5": "incomplete",
    }


def test_status_filter_and_top(sweep, capsys):
    compare_cli(capsys, sweep, "--status", "pruned", "failed")
    assert [r["run"] for r in read_csv(sweep / "comparison.csv")] == ["3", "4"]
    compare_cli(capsys, sweep, "--status", "target-met", "--status", "incomplete")
    assert [r["run"] for r in read_csv(sweep / "comparison.csv")] == ["1", "2", "5", "6"]
    compare_cli(capsys, sweep, "--sort", "acc", "--top", "2")
    assert [r["run"] for r in read_csv(sweep / "comparison.csv")] == ["2", "1"]


@pytest.mark.draws
def test_writes_csv_and_two_pngs_into_out(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    code, _, err = compare_cli(capsys, sweep, "--out", out)
    assert code == 0
    assert (out / "comparison.csv").is_file() and not (sweep / "comparison.csv").exists()
    for name in ("pareto.png", "curves.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert str(out) in err.splitlines()[-1]


def test_pareto_front_is_fewest_params_for_highest_accuracy(sweep):
    rows = [r for r in map(runs.load_run, discover.find_runs([sweep])[0]) if not isinstance(r, str)]
    verdict.sort_and_filter(rows)
    front = plots.pareto_front(verdict.completed(rows), key=figures.size_and_accuracy)
    # run 0 (1,046 params), run 1 (4,882, beats 0), run 2 (14,678, beats 1); the pruned and
    # running runs never enter, however accurate they were when they stopped
    assert [r.path.name for r in front] == ["0", "1", "2"]


def test_markdown_output(sweep, capsys):
    code, out, _ = compare_cli(capsys, sweep, "--format", "md", "--status", "target-met")
    assert code == 0
    lines = out.strip().splitlines()
    header = "| run | model | lr | params | test acc | best-epoch acc | epochs | wall |"
    assert lines[0] == header + " status |"
    assert lines[1] == "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    assert (
        lines[2] == "| 1 | small | 0.1 | 4,882 | 99.45 | 99.50 (ep 2) | 3/3 | 20.0s | target met |"
    )
    assert len(lines) == 4
    assert "┃" not in out  # no rich box drawing


def test_globs_and_several_sweeps_together(tmp_path, capsys):
    make_run(tmp_path / "multiruns" / "a", "0", ["model=tiny"], params=1046, accs=[98.0])
    make_run(tmp_path / "multiruns" / "b", "0", ["model=small"], params=4882, accs=[99.5])
    make_run(tmp_path / "runs", "12-00-00_small", ["model=small"], accs=[99.0])
    code, _, _ = compare_cli(capsys, tmp_path / "multiruns" / "*", "--out", tmp_path)
    assert code == 0
    assert [r["run"] for r in read_csv(tmp_path / "comparison.csv")] == ["a/0", "b/0"]
    compare_cli(capsys, tmp_path, tmp_path / "runs")  # the same run twice is one row
    assert len(read_csv(tmp_path / "comparison.csv")) == 3


@pytest.mark.slow
@pytest.mark.draws
def test_plots_that_compare_did_not_write_are_kept(tmp_path, sweep, capsys):
    run = make_run(tmp_path, "12-00-00_small", ["model=small"], accs=[99.0])
    (run / record.CURVES).write_bytes(b"the run's own plot")
    (sweep / "pareto.png").write_bytes(b"the sweep report's plot")
    for folder in (run, sweep, sweep):  # twice: the second time finds compare/ again
        assert cli.main([str(folder)]) == 0
        assert (folder / "compare" / "comparison.csv").is_file()
        assert (folder / "compare" / "curves.png").read_bytes()[:8] == PNG
        assert not (folder / "comparison.csv").exists()
    assert (run / record.CURVES).read_bytes() == b"the run's own plot"
    assert (sweep / "pareto.png").read_bytes() == b"the sweep report's plot"
    assert [r["run"] for r in read_csv(run / "compare" / "comparison.csv")] == ["12-00-00_small"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}/nothing-here"], "error: no run folders found under"),
        (["{tmp}/sweep", "--target", "99.99"], "error: all 7 runs were filtered out"),
        (["{tmp}/sweep", "--status", "failed", "--target", "99"], "were filtered out"),
    ],
)
def test_empty_selection_says_so_and_exits_1(tmp_path, sweep, capsys, argv, message):
    (tmp_path / "sweep").symlink_to(sweep)
    (tmp_path / "nothing-here").mkdir()
    code, out, err = compare_cli(capsys, *(a.format(tmp=tmp_path) for a in argv))
    assert code == 1
    assert out == ""
    assert message in err.splitlines()[-1]


def test_only_broken_folders_is_an_empty_selection(tmp_path, capsys):
    (make_run(tmp_path, "0", ["model=small"]) / record.METRICS).write_text("not json")
    code, _, err = compare_cli(capsys, tmp_path)
    assert code == 1
    assert err.splitlines() == [
        f"warning: skipping {(tmp_path / '0').resolve()}: metrics.json is unreadable or corrupt"
        " (Expecting value: line 1 column 1 (char 0))",
        f"error: no readable run folders under {tmp_path}",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: PATH"),
        (["x", "--sort", "size"], "argument --sort: invalid choice: 'size'"),
        (["x", "--status", "done"], "invalid status 'done'"),
        (["x", "--top", "0"], "--top must be at least 1"),
        (["x", "--target", "high"], "argument --target: invalid float value: 'high'"),
    ],
)
def test_bad_arguments_get_argparse_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# The search preset's swept keys, as a sweep of it leaves them in each trial's overrides.
PRESET_KEYS = {
    "model.w1": lambda rng: rng.randint(3, 8),
    "model.w2": lambda rng: rng.randint(4, 12),
    "model.w3": lambda rng: rng.randint(4, 16),
    "model.n1": lambda rng: rng.randint(1, 3),
    "model.n2": lambda rng: rng.randint(1, 3),
    "model.n3": lambda rng: rng.randint(1, 3),
    "model.pool2": lambda rng: rng.choice([True, False]),
    "dropout.p": lambda rng: rng.uniform(0, 0.1),
    "dropout.placement": lambda rng: rng.choice(["unit", "block"]),
    "optimizer.lr": lambda rng: rng.uniform(0.02, 0.4),
    "optimizer.weight_decay": lambda rng: 10 ** rng.uniform(-6, -3),
    "scheduler.pct_start": lambda rng: rng.uniform(0.1, 0.4),
    "data.augment.strength": lambda rng: rng.uniform(0, 1.5),
    "trainer.label_smoothing": lambda rng: rng.uniform(0, 0.1),
}


@pytest.fixture
def big_sweep(tmp_path: Path) -> Path:
    """A 40-trial sweep folder of the search preset: 14 swept keys with 17-digit floats,
    pruned and completed trials, sizes up to five digits."""
    rng = random.Random(0)
    root = tmp_path / "sweeps" / "smallest-1a2b3c4d"
    for n in range(40):
        overrides = [f"{k}={draw(rng)}" for k, draw in PRESET_KEYS.items()]
        overrides += ["hparams_search=smallest", "trainer.epochs=3"]
        final = rng.uniform(98.0, 99.6)
        pruned = n % 3 == 2
        accs = [final - 1.5, final - 0.3] if pruned else [final - 3, final - 1, final]
        status = RunStatus.PRUNED if pruned else RunStatus.COMPLETED
        params = rng.randint(1500, 15000)
        make_run(root, f"trial_{n:03d}", overrides, params=params, accs=accs, status=status)
    return root


def test_a_sweep_scale_table_fits_120_columns_with_its_key_columns_whole(
    big_sweep, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = compare_cli(capsys, big_sweep)
    assert code == 0
    lines = out.splitlines()
    assert max(map(len, lines)) <= 120
    assert "…" not in out  # nothing cut: what does not fit is left out whole
    header = next(line for line in lines if line.startswith("run "))
    assert header.split()[-4:] == ["params", "test", "acc", "status"]
    assert "w1" in header.split() and "model.w1" not in header  # short names
    rows = {r["run"]: r for r in read_csv(big_sweep / "comparison.csv")}
    shown = [line for line in lines if line.startswith("trial_")]
    assert len(shown) == 40
    for line in shown:
        row = rows[line.split()[0]]
        assert line.rstrip().endswith(row["status"])
        assert f"{int(row['params']):,}" in line.split()
        assert f"{float(row['test_acc']):.2f}" in line.split()
        # Rounded to 3 significant digits, e.g. the dropout rate.
        assert f"{float(row['dropout.p']):.3g}" in line.split()
    # What did not fit is named, and comparison.csv holds every key with its full value.
    assert "not shown for lack of room:" in out and "label_smoothing" in out
    assert {*PRESET_KEYS} <= set(rows["trial_000"])
    assert len(rows["trial_000"]["dropout.p"]) > 10


def test_keys_picks_the_table_columns(big_sweep, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = compare_cli(capsys, big_sweep, "--keys", "lr", "trainer.label_smoothing")
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("run "))
    assert lines[header].split()[:3] == ["run", "lr", "smoothing"]
    assert lines[header - 1].split() == ["label_"]  # a long name over two lines
    assert "not shown" not in out  # two keys leave room for every other column
    assert len(next(csv.reader((big_sweep / "comparison.csv").open()))) > 20  # all keys
    with pytest.raises(SystemExit):
        cli.main([str(big_sweep), "--keys", "momentum"])
    assert "--keys: momentum is not a key that differs" in capsys.readouterr().err


def test_short_names_and_values():
    names = layout.short_names(["model.w1", "model.p", "dropout.p", "optimizer.lr", "p"])
    assert names == {
        "model.w1": "w1",
        "model.p": "model.p",
        "dropout.p": "dropout.p",
        "optimizer.lr": "lr",
        "p": "p",
    }
    assert layout.short_value("0.01456519136895919") == "0.0146"
    assert layout.short_value("2.2971384069431e-06") == "2.3e-06"
    assert layout.short_value("128") == "128"
    assert layout.short_value("0.9995") == "0.9995"  # not 1: typed short, shown as typed
    assert layout.short_value("5e-05") == "5e-05"
    assert layout.short_value("small") == "small"
    assert layout.short_value("[8,16]") == "[8,16]"


@pytest.mark.slow
@pytest.mark.draws
def test_sweep_scale_curves_zoom_on_the_finals_without_a_layout_warning(big_sweep, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "constrained_layout not applied"
        assert cli.main([str(big_sweep)]) == 0
    assert (big_sweep / "curves.png").read_bytes()[:8] == PNG
    finals = [float(r["test_acc"]) for r in read_csv(big_sweep / "comparison.csv")]
    floor = plots.accuracy_floor(finals)
    spread = max(finals) - min(finals)  # about 2 points: the floor is a bit below the worst
    assert min(finals) - spread < floor < min(finals)
    assert plots.accuracy_floor([*finals, 11.35]) == floor  # a run stuck at chance is no guide


@pytest.mark.draws
@pytest.mark.slow
def test_real_multirun(tmp_path, data_root):
    run_in_process(
        tmp_path,
        "-m",
        "model=tiny,small",
        "data.train_subset=500",
        "trainer.epochs=1",
        "trainer.device=cpu",
        "scheduler=none",
    )
    (sweep,) = (tmp_path / "outputs" / "multiruns").glob("*/*")
    shown = subprocess.run(  # as a user runs it, the way the README shows
        [sys.executable, "-m", "mnist_sweep.compare", str(sweep), "--format", "md"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    rows = read_csv(sweep / "comparison.csv")
    assert [(r["model"], r["params"], r["epochs_run"]) for r in rows] == [
        ("tiny", "1046", "1"),
        ("small", "4882", "1"),
    ]
    assert list(rows[0])[:3] == ["run", "model", "params"]  # only model differs
    assert shown.stdout.splitlines()[0].startswith("| run | model | params |")
    assert "| 0 | tiny | 1,046 |" in shown.stdout
    for name in ("pareto.png", "curves.png"):
        assert (sweep / name).read_bytes()[:8] == PNG


def test_the_fail_state_compare_reads_is_optunas():
    assert TrialState.FAIL.name == sweep_files.FAILED


@pytest.mark.slow
def test_compare_imports_nothing_of_search_nor_torch():
    # The one-way flow: compare reads run folders through run/record.py only, and
    # starts without paying for torch or optuna.
    probe = "import sys, mnist_sweep.compare.cli; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [m for m in loaded if m.startswith(("mnist_sweep.search", "optuna", "torch"))]
