"""The docs run as written, and the results they cite cannot drift.

(a) Every recipe docs/RESULTS.md cites is pinned: each snapshot in
    docs/results/snapshots/ holds a command's overrides and the recipe keys the run
    had; the overrides, composed today, must give the same recipe.
(b) Every `python -m mnist_sweep ...` command in the README's and docs/*.md's code
    blocks is composed as `--cfg job` would (in-process, no training); a command of
    another module (`mnist_sweep.compare`, `.export`, ...) must name a module that
    exists and options it defines.

A new result gets a new snapshot, written once:
    python tests/test_docs.py NAME "WHAT RAN" OVERRIDE ...   # docs/results/snapshots/NAME.yaml
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from omegaconf import DictConfig, OmegaConf

from mnist_sweep.config import check_group_choices, compose_config
from mnist_sweep.schema import validate

REPO = Path(__file__).resolve().parents[1]
SNAPSHOTS = REPO / "docs" / "results" / "snapshots"
RESULTS = REPO / "docs" / "RESULTS.md"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# The keys that define a recipe: what a run trains, not where or how it reports, nor how
# its seeds are executed (stacked, replayed as a CUDA graph: each seed trains the same).
RECIPE = ["model", "dropout", "data", "optimizer", "scheduler", "average", "distill", "trainer"]
NOT_RECIPE = {"data": {"root"}, "trainer": {"progress", "device", "seeds", "cuda_graph"}}


def recipe(cfg: DictConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"target_acc": cfg.target_acc}
    for section in RECIPE:
        values = OmegaConf.to_container(cfg[section], resolve=True)
        assert isinstance(values, dict)
        out[section] = {k: v for k, v in values.items() if k not in NOT_RECIPE.get(section, ())}
    return out


def load_snapshot(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


SNAPSHOT_FILES = sorted(SNAPSHOTS.glob("*.yaml"))


@pytest.mark.parametrize("path", SNAPSHOT_FILES, ids=[p.stem for p in SNAPSHOT_FILES])
def test_a_cited_recipe_composes_what_ran(path: Path):
    snapshot = load_snapshot(path)
    composed = recipe(compose_config(snapshot["command"]))
    assert composed == snapshot["config"], (
        f"{' '.join(snapshot['command'])} no longer composes {path.name}: an experiment a "
        "result cites must not change; give the new recipe a new name"
    )


def test_every_experiment_results_cites_has_a_snapshot():
    cited = set(re.findall(r"experiment=(\w+)", RESULTS.read_text())) - {"smallest"}
    pinned = {load_snapshot(p)["command"][0].removeprefix("experiment=") for p in SNAPSHOT_FILES}
    assert cited <= pinned, f"cited without a snapshot: {sorted(cited - pinned)}"


def test_smallest_is_an_alias_of_the_current_answer():
    smallest = recipe(compose_config(["experiment=smallest"]))
    answer = recipe(compose_config(["experiment=ladder_5568"]))
    assert smallest["model"].pop("name") == "smallest"
    assert answer["model"].pop("name") == "ladder_5568"
    assert smallest == answer


# --- (b) the commands in the docs ---------------------------------------------------

ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
SCRIPTS = {"mnist-sweep": "mnist_sweep", "mnist-sweep-compare": "mnist_sweep.compare"}


def _balanced(text: str) -> bool:
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def _substitute(text: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):
        text = re.sub(rf"\$\{{{name}\}}|\${name}\b", lambda _m, n=name: variables[n], text)
    return text


def code_blocks(page: Path) -> list[str]:
    """The page's shell code blocks (fenced as bash, sh, shell or nothing)."""
    blocks: list[str] = []
    lang: str | None = None
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            if lang is None:
                lang = line.strip().removeprefix("```").strip()
                blocks.append("")
            else:
                if lang not in ("bash", "sh", "shell", ""):
                    blocks.pop()
                lang = None
        elif lang is not None:
            blocks[-1] += line + "\n"
    return blocks


SHELL_LINE = re.compile(r"^(python -m mnist_sweep|mnist-sweep|[A-Za-z_][A-Za-z0-9_]*=)")


def commands(page: Path) -> list[tuple[str, list[str]]]:
    """(module, arguments) of every `python -m mnist_sweep...` (or console script)
    command in the page's shell code blocks, with the block's variables filled in."""
    found: list[tuple[str, list[str]]] = []
    for block in code_blocks(page):
        variables: dict[str, str] = {}
        lines: list[str] = []
        for raw in block.replace("\\\n", " ").splitlines():
            if lines and not _balanced(lines[-1]):
                lines[-1] += "\n" + raw
            elif SHELL_LINE.match(raw.strip()):
                lines.append(raw.strip())
        for line in lines:
            words = shlex.split(_substitute(line, variables), comments=True)
            assignments = []
            while words and ASSIGNMENT.match(words[0]):
                assignments.append(ASSIGNMENT.match(words.pop(0)))
            if not words:  # NAME=value: a variable for the lines below
                variables.update((m[1], m[2]) for m in assignments)
            elif words[:2] == ["python", "-m"] and words[2].split(".")[0] == "mnist_sweep":
                found.append((words[2], words[3:]))
            elif words[0] in SCRIPTS:
                found.append((SCRIPTS[words[0]], words[1:]))
    return found


DOC_COMMANDS = [
    (page.relative_to(REPO).as_posix(), module, args)
    for page in PAGES
    for module, args in commands(page)
]


def test_the_docs_hold_commands():
    assert sum(module == "mnist_sweep" for _, module, _ in DOC_COMMANDS) > 50


def one_job(args: list[str]) -> list[str]:
    """A command's overrides as one job: `--cfg`, `-m` dropped, each sweep at its first
    value (every choice of a config group is still checked to exist)."""
    parser = OverridesParser.create()
    overrides: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--cfg", "-c"):
            skip = True
            continue
        if arg in ("-m", "--multirun"):
            continue
        assert not arg.startswith("-"), f"an option the entry point does not take: {arg}"
        (override,) = parser.parse_overrides([arg])
        if override.is_sweep_override():
            value = override.value()
            if isinstance(value, ChoiceSweep):
                first = value.list[0]
            elif isinstance(value, RangeSweep | IntervalSweep):
                first = value.start
            else:
                raise AssertionError(f"a sweep this test cannot pick from: {arg}")
            arg = f"{override.get_key_element()}={first}"
        overrides.append(arg)
    return overrides


MAIN = [(p, a) for p, m, a in DOC_COMMANDS if m == "mnist_sweep"]
OTHER = [(p, m, a) for p, m, a in DOC_COMMANDS if m != "mnist_sweep"]


# Slow by count, not by cost: one Hydra compose each, for every command the docs hold.
@pytest.mark.slow
@pytest.mark.parametrize(("page", "args"), MAIN, ids=[f"{p}:{' '.join(a)[:60]}" for p, a in MAIN])
def test_a_documented_command_composes(page: str, args: list[str]):
    check_group_choices(args)
    cfg = compose_config(one_job(args), return_hydra_config=True)  # hydra.* overrides too
    validate(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))  # `--cfg job`'s


def _module_source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    origin = Path(spec.origin)
    package = origin.name in ("__init__.py", "__main__.py")
    files = origin.parent.glob("*.py") if package else [origin]
    return "\n".join(f.read_text() for f in files)


@pytest.mark.parametrize(
    ("page", "module", "args"), OTHER, ids=[f"{p}:{m} {' '.join(a)[:40]}" for p, m, a in OTHER]
)
def test_a_documented_tool_exists_with_its_options(page: str, module: str, args: list[str]):
    source = _module_source(module)
    for arg in args:
        if arg.startswith("--"):
            option = arg.split("=")[0]
            assert f'"{option}"' in source, f"{module} has no option {option}"


if __name__ == "__main__":
    name, ran, *overrides = sys.argv[1:]
    snapshot = {"ran": ran, "command": overrides, "config": recipe(compose_config(overrides))}
    text = yaml.safe_dump(snapshot, sort_keys=False, width=100)
    (SNAPSHOTS / f"{name}.yaml").write_text(text)
