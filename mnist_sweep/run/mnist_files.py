"""MNIST's four raw files, checked before anything reads them: present, whole, and
(data.verify) byte for byte MNIST's. No torch here: the command checks them before
it imports the training code, so a missing or damaged file costs a second, not the
seconds torch takes to import."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from mnist_sweep.errors import DataError

RAW_FILES = {
    "train-images-idx3-ubyte": (60000, 28, 28),
    "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28),
    "t10k-labels-idx1-ubyte": (10000,),
}
# SHA-256 of the canonical MNIST files: a flipped byte anywhere is caught, not
# only a truncated file. data.verify=false skips this (for other MNIST-format data).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
ROOT_HINT = (
    "set data.root=<dir> (or the MNIST_DATA environment variable) to the folder holding MNIST/raw/"
)


def _check_idx_file(path: Path, shape: tuple[int, ...]) -> None:
    """Validate an IDX file's header and size before torchvision parses it.

    torchvision's parser fails on a truncated file with an opaque reshape
    error; this names the file and says what is wrong.
    """
    with path.open("rb") as f:
        header = f.read(4 + 4 * len(shape))
    size = path.stat().st_size
    if len(header) < 4 + 4 * len(shape) or header[:3] != b"\x00\x00\x08" or header[3] != len(shape):
        raise DataError(f"{path} is not an MNIST file (bad header); restore it or re-download it")
    dims = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(len(shape)))
    expected = len(header) + math.prod(dims)
    if dims != shape or size != expected:
        want = len(header) + math.prod(shape)
        raise DataError(
            f"{path} is truncated or corrupt ({size:,} bytes, expected {want:,}); "
            "restore it or re-download it with data.download=true"
        )


# Files whose SHA-256 this process has checked, as (path, size, mtime): the command
# checks them before importing torch and load_mnist again, and a sweep once per trial.
_verified: set[tuple[str, int, int]] = set()


def _check_sha256(path: Path) -> None:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[path.name]:
        raise DataError(
            f"{path} is corrupt (its SHA-256 is not MNIST's); restore it or re-download it "
            "with data.download=true (data.verify=false accepts other MNIST-format data)"
        )
    _verified.add(key)


def _check_files(raw: Path, verify: bool) -> None:
    for name, shape in RAW_FILES.items():
        _check_idx_file(raw / name, shape)
        if verify:
            _check_sha256(raw / name)


def check_mnist(root: str | Path, download: bool = False, verify: bool = True) -> list[str]:
    """Raise DataError, naming the file and what to do, unless MNIST's files under `root`
    are whole; the names of those missing, when `download` will fetch them."""
    raw = Path(root).expanduser().resolve() / "MNIST" / "raw"
    missing = [name for name in RAW_FILES if not (raw / name).is_file()]
    if missing and not download:
        raise DataError(
            f"MNIST not found: no {raw / missing[0]}; {ROOT_HINT}, or data.download=true"
        )
    if not missing:
        _check_files(raw, verify)
    return missing
