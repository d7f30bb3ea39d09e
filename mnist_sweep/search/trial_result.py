"""What a trial of a sweep found, typed: written to its Optuna trial and read back here only.

Each field is one user attribute of the trial, so optuna-dashboard and
`study.trials_dataframe()` show them as columns (`user_attrs_params`, ...). A trial's
record is written in parts as it runs (its folder and worker first, its figures at the
end, a reason when it fails); `save` writes the fields a part sets, `of` reads them all.
"""

from __future__ import annotations

from typing import Any

from optuna.trial import BaseTrial
from pydantic import BaseModel, ConfigDict


class TrialResult(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a study may carry attributes of its own

    run_dir: str | None = None  # the first seed's run folder
    worker: str | None = None  # host:pid of the sweep process that ran it
    retry_of: int | None = None  # the trial, lost with its worker, that this one retries
    fail_reason: str | None = None
    params: int | None = None
    selection: str | None = None  # the split it was judged on: "val" if held out, else "test"
    selection_acc: float | None = None  # the mean over its seeds (a pruned trial: last epoch)
    test_acc: float | None = None  # the mean over its seeds
    val_acc: float | None = None
    best_test_acc: float | None = None  # the first seed's
    seeds: list[int] = []
    seed_accs: list[float] = []  # each seed's final-epoch selection accuracy
    seed_test_accs: list[float] = []
    seed_run_dirs: list[str] = []
    holds: bool | None = None  # the holds rule over its seeds

    @classmethod
    def of(cls, trial: BaseTrial) -> TrialResult:
        return cls.model_validate(trial.user_attrs)

    def attrs(self) -> dict[str, Any]:
        """The user attributes this record sets (its fields that are not left empty)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def save(self, trial: BaseTrial) -> None:
        """Write the fields this record sets onto a live `optuna.Trial`."""
        for key, value in self.attrs().items():
            trial.set_user_attr(key, value)

    @property
    def runs(self) -> int:
        """Trainings the trial ran: one per seed (a pruned or failed trial, one)."""
        return max(len(self.seeds), 1)
