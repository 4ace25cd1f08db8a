"""Files shipped inside the installed package: recipes, search spaces, bundled data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def package_file(package: str, relative: str) -> Path | None:
    """The file at `relative` (a `/`-separated path) inside an installed `package`, or None.

    `tfmtl.recipes` and `tfmtl.spaces` have no `__init__.py`, so they are namespace
    packages: `resources.files` gives a `MultiplexedPath`, whose `str()` is its repr,
    not a folder; joining the relative path onto it gives a real `Path`.

    Example:

    ```python
    package_file("tfmtl.recipes", "census-income/mmoe.toml")   # .../tfmtl/recipes/census-income/mmoe.toml
    ```
    """
    try:
        candidate = resources.files(package).joinpath(relative)
    except ModuleNotFoundError:
        return None
    # A zipped install gives another Traversable; the callers read real files.
    return candidate if isinstance(candidate, Path) and candidate.is_file() else None
