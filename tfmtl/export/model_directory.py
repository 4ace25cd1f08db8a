"""TF Serving model directories: numbered versions, each written whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tfmtl.data import write_atomically
from tfmtl.errors import InputError


def versions(base: Path) -> list[int]:
    """The version numbers already in a model directory, ascending."""
    if not base.is_dir():
        return []
    return sorted(int(child.name) for child in base.iterdir() if child.is_dir() and child.name.isdigit())


def version_folder(base: str | os.PathLike, version: int | None, overwrite: bool = False) -> Path:
    """The folder version `version` of `base` goes to (the next free number when `None`).

    Raises `InputError` for a bad version number, or a version folder that exists
    and is not empty unless `overwrite`, before anything is written.
    """
    base = Path(base)
    if base.exists() and not base.is_dir():
        raise InputError(f"export path {str(base)!r} is a file; expected a model directory")
    if version is None:
        version = (versions(base) or [0])[-1] + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"version: expected a positive integer, got {version!r}")
    target = base / str(version)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())) and not overwrite:
        raise InputError(f"version {version} already exists at {str(target)!r}; pass --overwrite to replace it")
    return target


def write_version(
    base: str | os.PathLike, version: int | None, write: Callable[[str], None], overwrite: bool = False
) -> Path:
    """Calls `write(folder)` and makes the folder version `version` of the model directory `base`.

    Without `version`, the next number after the highest one there (1 in a new
    directory). The folder is written beside its final name under a hidden name
    that TF Serving skips and renamed when complete, so an interrupted export leaves
    no half-written version. An existing non-empty version is an error unless
    `overwrite`, and is then replaced only once the new one is complete.
    """
    base = Path(base)
    target = version_folder(base, version, overwrite)
    version = int(target.name)
    replaced: list[str] = []

    def write_then_set_aside_old(folder: str) -> None:
        write(folder)
        if target.exists() and not overwrite and any(target.iterdir()):
            # Another export took this version while this one was writing: keep theirs.
            raise InputError(f"version {version} appeared at {str(target)!r} during this export; nothing was replaced")
        if target.exists():
            # Moved aside, not deleted, until the new version has taken its name.
            aside = tempfile.mkdtemp(prefix=f".{version}.", suffix=".replaced", dir=base)
            os.replace(target, aside)
            replaced.append(aside)

    try:
        write_atomically(target, write_then_set_aside_old)
    except BaseException:
        if replaced and not target.exists():
            os.replace(replaced.pop(), target)
        raise
    for aside in replaced:
        shutil.rmtree(aside, ignore_errors=True)
    return target
