"""Teachers shipped with the package, so that a distilled answer is distilled from the
very teacher its claim used, on any machine.

A shipped teacher is a run folder (its .hydra/config.yaml, a checkpoint.pt with the
weights alone, and its metrics.json) named by `distill.teacher=<name>`. Its checkpoint
is pinned by SHA-256: a changed file is refused rather than silently distilled from.
The same recipe retrained (`python -m mnist_sweep experiment=<name>`) lands in
outputs/<name> and is used with `distill.teacher=outputs/<name>`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mnist_sweep.errors import UserError
from mnist_sweep.run import record

HERE = Path(__file__).parent
# name -> SHA-256 of its checkpoint.pt; `python -m mnist_sweep.teachers NAME RUN_DIR` writes one.
SHIPPED: dict[str, str] = {
    "teacher_8128": "dd9bd837c4016528ab881661432c51b60b7c54b4ba699cf1359f9c77c3356017",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_teacher(name: str) -> Path | None:
    """The folder of the shipped teacher called `name`, its checkpoint checked against its
    pin; None when no teacher of that name is shipped."""
    if name not in SHIPPED:
        return None
    folder = HERE / name
    checkpoint = folder / record.CHECKPOINT
    try:
        digest = sha256(checkpoint)
    except OSError as e:
        raise UserError(
            f"the shipped teacher {name} is missing its checkpoint ({e.strerror}); "
            "reinstall the package"
        ) from None
    if digest != SHIPPED[name]:
        raise UserError(
            f"the shipped teacher {name} ({checkpoint}) does not match its SHA-256 pin; "
            "reinstall the package, or retrain it: python -m mnist_sweep experiment=" + name
        )
    return folder
