"""Ship a finished run as a named teacher: copy its config and metrics, keep only the
weights of its checkpoint, and print the SHA-256 pin for SHIPPED.

    python -m mnist_sweep.teachers teacher_8128 outputs/teacher_8128
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mnist_sweep.errors import UserError, report
from mnist_sweep.run import record
from mnist_sweep.run.record import RunStatus
from mnist_sweep.teachers import HERE, sha256


def ship(name: str, run_dir: Path) -> str:
    run = record.RunRecord.load(run_dir)
    if run.status is not RunStatus.COMPLETED:
        raise UserError(f"{run_dir} is {run.status.value}; ship a finished run")
    folder = HERE / name
    (folder / record.HYDRA_DIR).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / record.HYDRA_CONFIG, folder / record.HYDRA_CONFIG)
    shutil.copyfile(run_dir / record.METRICS, folder / record.METRICS)
    checkpoint = record.load_checkpoint(run_dir)
    # A teacher only runs forward: the state to resume training from is left behind.
    record.save_checkpoint(folder, checkpoint.model_copy(update={"resume": None}))
    return sha256(folder / record.CHECKPOINT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mnist_sweep.teachers", description=__doc__)
    parser.add_argument("name")
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        digest = ship(args.name, args.run_dir)
    except UserError as e:
        return report(str(e))
    print(f'"{args.name}": "{digest}",')
    return 0


if __name__ == "__main__":
    sys.exit(main())
