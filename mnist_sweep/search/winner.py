"""winner.json: what a sweep found, declared once and read back typed (by confirm, by
the report CLI, by anyone scripting over sweeps)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from mnist_sweep.errors import UserError
from mnist_sweep.run import record

WINNER = "winner.json"
REWRITE = "write it again with python -m mnist_sweep.search.report --study <its study>"


class FrontPoint(BaseModel):
    trial: int
    params: int
    selection_acc: float


class Winner(BaseModel):
    """The sweep's answer. Fields of the winning trial are null, with a message naming the
    closest trial, when no trial qualified."""

    model_config = ConfigDict(extra="forbid")

    study: str | None = None
    objective: str = "smallest"
    target_acc: float | None = None
    selection: str = "test"  # the split trials were judged on: "test", or "val" if held out
    trials: dict[str, int] = {}  # trial counts by state
    params: int | None = None
    test_acc: float | None = None  # the mean over the trial's seeds
    val_acc: float | None = None
    selection_acc: float | None = None
    seeds: list[int] | None = None
    seed_accs: list[float] | None = None  # each seed's final-epoch selection accuracy
    seed_test_accs: list[float] | None = None
    holds: bool | None = None  # the holds rule over the trial's seeds
    overrides: list[str] | None = None
    run_dir: str | None = None
    trial: int | None = None
    front: list[FrontPoint] | None = None  # pareto: the (params, accuracy) front
    message: str = ""

    def save(self, sweep_dir: Path) -> None:
        record.write_json(sweep_dir / WINNER, self.model_dump(mode="json"))

    @classmethod
    def load(cls, sweep_dir: Path) -> Winner:
        """The sweep folder's winner.json; UserError, one line, when it is missing or damaged
        (a winner with params must say what it ran: overrides, run_dir, target_acc)."""
        path = sweep_dir / WINNER
        damaged = f"{path} is damaged ({{}}); {REWRITE}"
        try:
            data = json.loads(path.read_text())
        except OSError as e:
            raise UserError(f"cannot read {path} ({e}); pass a finished sweep folder") from None
        except ValueError:
            raise UserError(damaged.format("not JSON")) from None
        if not isinstance(data, dict):
            raise UserError(damaged.format("not a winner record"))
        missing = [k for k in ("overrides", "run_dir", "target_acc") if data.get(k) is None]
        if data.get("params") is not None and missing:
            raise UserError(damaged.format(f"no {', '.join(missing)}"))
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            where = ".".join(map(str, e.errors()[0]["loc"]))
            raise UserError(damaged.format(f"{where}: {e.errors()[0]['msg']}")) from None
