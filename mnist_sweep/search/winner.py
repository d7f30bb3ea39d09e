"""winner.json: what a sweep found, declared once and read back typed (by confirm, by
the report CLI, by anyone scripting over sweeps)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from mnist_sweep.errors import UserError
from mnist_sweep.run import record

WINNER = "winner.json"


class FrontPoint(BaseModel):
    trial: int
    params: int
    selection_acc: float


class Winner(BaseModel):
    """The sweep's answer. Fields of the winning trial are null, with a message naming the
    closest trial, when no trial qualified."""

    model_config = ConfigDict(extra="forbid")

    study: str
    objective: str = "smallest"
    target_acc: float
    selection: str  # the split trials were judged on: "test", or "val" with a held-out split
    trials: dict[str, int]  # trial counts by state
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
    message: str

    def save(self, sweep_dir: Path) -> None:
        record.write_json(sweep_dir / WINNER, self.model_dump(mode="json"))

    @classmethod
    def load(cls, sweep_dir: Path) -> Winner:
        path = sweep_dir / WINNER
        rewrite = "write it again with python -m mnist_sweep.search.report --study <its study>"
        try:
            text = path.read_text()
        except OSError as e:
            raise UserError(f"cannot read {path} ({e}); pass a finished sweep folder") from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as e:
            raise UserError(
                f"{path} is damaged ({e.error_count()} bad fields, first: "
                f"{'.'.join(map(str, e.errors()[0]['loc'])) or 'the file'}); {rewrite}"
            ) from None
