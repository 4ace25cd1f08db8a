"""Tables as sharded TFRecord files of `tf.Example`s, for large data and TPUs, and back."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfmtl.data.files import write_atomically, write_json
from tfmtl.errors import InputError
from tfmtl.features.spec import holds_sequences

SCHEMA_FILE = "schema.json"
READ_BATCH = 65_536
# What each column is stored as: one float (float32 in a tf.Example), one float64 that
# float32 would round (its bits as one int64), one int64, one 0/1 int64 for booleans, one
# string, or a list of strings. A missing value is left out.
KINDS = ("float", "double", "int", "bool", "string", "list")


def column_kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_numeric_dtype(series):
        return "double" if _float32_rounds(series) else "float"
    return "list" if holds_sequences(series) else "string"


def _float32_rounds(series: pd.Series) -> bool:
    """Whether storing `series` as float32 would change a value (number-coded categories and IDs must not move)."""
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(over="ignore"):
        rounded = values.astype(np.float32).astype(np.float64)
    return bool(np.any((rounded != values) & ~np.isnan(values)))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _missing(value: Any) -> bool:
    if isinstance(value, (list, tuple, np.ndarray)):
        return False
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _entry_encoder(name: str, kind: str) -> Callable[[Any], bytes]:
    """Value -> the serialized `Features` message holding only this column's entry.

    A serialized protobuf message with repeated (and map) fields is the concatenation
    of messages holding one entry each, so a row's `Features` is the concatenation of
    its columns' entries; entries of repeated values are cached.
    """

    def feature(value: Any) -> tf.train.Feature:
        if kind == "float":
            return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        if kind == "double":
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(np.float64(value).view(np.int64))]))
        if kind in ("int", "bool"):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
        values = value if kind == "list" else [value]
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode() for v in values]))

    def entry(value: Any) -> bytes:
        return tf.train.Features(feature={name: feature(value)}).SerializeToString()

    if kind == "list":
        return lambda value: entry(list(value)) if isinstance(value, (list, tuple, np.ndarray)) else b""
    cached = functools.lru_cache(maxsize=1 << 16)(entry)
    return lambda value: b"" if _missing(value) else cached(value)


def write_tfrecords(
    df: pd.DataFrame, out_dir: str | os.PathLike, *, shards: int = 8, compression: str | None = "GZIP"
) -> list[Path]:
    """Writes `df` as `shards` TFRecord files of one `tf.Example` per row, plus `schema.json`.

    Rows go to the shards in turn (row `i` to shard `i % shards`), so shards differ in
    size by at most one row. Give at least as many shards as workers will read them
    (`tfmtl.distribute.distributed_dataset`). The folder appears whole or not at all.

    Example:

    ```python
    train, _ = tfmtl.datasets.census_income()
    write_tfrecords(train, "data/census-train", shards=16)
    ```
    """
    if not isinstance(df, pd.DataFrame) or len(df) == 0:
        raise InputError("data: expected a non-empty pandas DataFrame")
    if not isinstance(shards, int) or not 1 <= shards <= len(df):
        raise InputError(f"--shards: expected an integer from 1 to the {len(df)} rows, got {shards!r}")
    if compression not in (None, "GZIP", "ZLIB"):
        raise InputError(f"--compression: expected GZIP, ZLIB or none, got {compression!r}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out: folder {str(out)!r} exists and is not empty")
    kinds = {str(name): column_kind(df[name]) for name in df.columns}
    encoders = [_entry_encoder(name, kind) for name, kind in kinds.items()]
    columns = [df[name].to_numpy(dtype=object) for name in df.columns]
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    names = [f"part-{i:05d}-of-{shards:05d}{suffix}" for i in range(shards)]

    def write(folder: str) -> None:
        os.mkdir(folder)
        for shard, name in enumerate(names):
            with tf.io.TFRecordWriter(os.path.join(folder, name), options=compression) as writer:
                for row in range(shard, len(df), shards):
                    features = b"".join(encode(column[row]) for encode, column in zip(encoders, columns))
                    writer.write(b"\x0a" + _varint(len(features)) + features)  # Example.features, field 1
        write_json(os.path.join(folder, SCHEMA_FILE), {"columns": kinds, "rows": len(df), "compression": compression,
                                                       "files": names})  # fmt: skip

    # Shards and schema in a hidden folder renamed into place when whole (over `out` if it is an
    # empty folder): an interrupted run leaves nothing under the final name for a rerun to refuse.
    write_atomically(out, write)
    return [out / name for name in names]


def list_shards(data: str | os.PathLike | Sequence[str]) -> list[str]:
    """The TFRecord files of a `write_tfrecords` folder, a glob, or a list of files, in order."""
    if isinstance(data, (str, os.PathLike)):
        path = str(data)
        if tf.io.gfile.isdir(path):
            return [os.path.join(path, name) for name in _schema(path)["files"]]
        files = sorted(tf.io.gfile.glob(path))
    else:
        files = [str(f) for f in data]
    if not files:
        raise InputError(f"data: no TFRecord files match {data!r}")
    return files


def _schema(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, SCHEMA_FILE)
    if not tf.io.gfile.exists(path):
        raise InputError(f"data folder {folder!r} has no {SCHEMA_FILE} (write it with tfmtl data to-tfrecord)")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def read_tfrecords(files: str | os.PathLike | Sequence[str]) -> pd.DataFrame:
    """Reads TFRecord files written by `write_tfrecords` back into a DataFrame.

    Columns keep their kind: floats (float64 where float32 would have rounded them, NaN
    where missing), int64 (nullable `Int64` when values are missing), booleans, strings
    (None where missing) and lists.

    Example:

    ```python
    write_tfrecords(train, "data/census-train", shards=16)
    back = read_tfrecords("data/census-train")   # the rows, shard by shard
    ```
    """
    files = list_shards(files)
    schema = _schema(os.path.dirname(files[0]))
    kinds: dict[str, str] = schema["columns"]
    parsing = {
        name: tf.io.FixedLenFeature([], tf.float32, default_value=float("nan")) if kind == "float"
        else tf.io.RaggedFeature(tf.int64 if kind in ("int", "bool", "double") else tf.string)
        for name, kind in kinds.items()
    }  # fmt: skip
    records = tf.data.TFRecordDataset(files, compression_type=schema.get("compression") or "")
    parts: dict[str, list] = {name: [] for name in kinds}
    for batch in records.batch(READ_BATCH).map(lambda s: tf.io.parse_example(s, parsing)):
        for name, kind in kinds.items():
            parts[name].append(_column(batch[name], kind))
    if not parts or not parts[next(iter(parts))]:
        raise InputError(f"data: TFRecord files {files[:2]}... hold no rows")
    return pd.DataFrame({name: pd.concat(values, ignore_index=True) for name, values in parts.items()})


def _column(values: Any, kind: str) -> pd.Series:
    if kind == "float":
        return pd.Series(values.numpy())
    lengths = values.row_lengths().numpy()
    flat = values.flat_values.numpy()
    if kind == "double":
        out = np.full(len(lengths), np.nan)
        out[lengths == 1] = flat.view(np.float64)
        return pd.Series(out)
    if kind in ("string", "list"):
        # numpy's astype(str) would decode bytes as ASCII.
        flat = np.array([v.decode("utf-8") for v in flat], dtype=object)
    if kind == "list":
        return pd.Series([list(row) for row in np.split(flat, np.cumsum(lengths)[:-1])], dtype=object)
    if (lengths == 1).all():
        if kind == "string":
            return pd.Series(flat, dtype=object)
        return pd.Series(flat.astype(bool) if kind == "bool" else flat)
    present = lengths == 1
    if kind == "string":
        out = np.full(len(lengths), None, dtype=object)
        out[present] = flat
        return pd.Series(out, dtype=object)
    out = pd.array(np.zeros(len(lengths), np.int64), dtype="boolean" if kind == "bool" else "Int64")
    out[present] = flat.astype(bool) if kind == "bool" else flat
    out[~present] = pd.NA
    return pd.Series(out)
