"""Reading tables from files and writing results without half-written files."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tfmtl.errors import InputError

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def read_table(path: str | os.PathLike, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Reads a CSV (optionally gzipped) or Parquet file into a DataFrame.

    CSV columns in `text_columns` are read as text, so that a test file whose
    categories happen to be all digits (`"07"`) reads them as training did.

    Example:

    ```python
    df = read_table("train.csv.gz")
    ```
    """
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise InputError(f"data file {str(path)!r} does not exist")
    try:
        if name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
        elif name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
            sep = "\t" if ".tsv" in name else ","
            df = pd.read_csv(path, sep=sep, skipinitialspace=True, dtype={column: str for column in text_columns})
        else:
            raise InputError(f"data file {str(path)!r}: expected a file ending in one of {', '.join(TABLE_SUFFIXES)}")
    except pd.errors.EmptyDataError:
        raise InputError(f"data file {str(path)!r} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"data file {str(path)!r} could not be read: {first_line}") from None
    if len(df) == 0:
        raise InputError(f"data file {str(path)!r} has no rows")
    return df


def make_folder(folder: str | os.PathLike) -> Path:
    """Creates `folder` and its parents where missing; a path that cannot be one is a one-line `InputError`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot make the folder {str(folder)!r}: {error.strerror or error}") from None
    return folder


def write_atomically(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Calls `write(temporary_path)` and moves the result to `path` only when it succeeded.

    The temporary file or folder sits beside `path`, so the final rename is atomic;
    an interrupted run leaves no half-written file under the final name.

    Example:

    ```python
    import pandas as pd
    scores = pd.DataFrame({"score": [0.1, 0.9]})
    write_atomically("scores.csv", lambda temporary: scores.to_csv(temporary, index=False))
    ```
    """
    path = Path(path)
    make_folder(path.parent)
    suffix = "".join(path.suffixes[-1:])
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(handle)
    os.unlink(temporary)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.isdir(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
        elif os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Writes `value` as indented JSON to `path`, atomically.

    Example:

    ```python
    write_json("metrics.json", {"income_auc": 0.948})   # Path("metrics.json")
    ```
    """

    def write(temporary: str) -> None:
        with open(temporary, "w") as f:
            json.dump(value, f, indent=2)
            f.write("\n")

    return write_atomically(path, write)
