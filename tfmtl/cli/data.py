"""`tfmtl data to-tfrecord`: a table as sharded TFRecord files, for large data and TPUs."""

from __future__ import annotations

from tfmtl.data import read_table
from tfmtl.distribute.tfrecord import write_tfrecords


def run_to_tfrecord(data: str, out: str, shards: int, compression: str) -> None:
    """Reads `data` and writes `shards` TFRecord files and `schema.json` into the new folder `out`."""
    table = read_table(data)
    codec = None if compression.lower() == "none" else compression.upper()
    paths = write_tfrecords(table, out, shards=shards, compression=codec)
    print(f"wrote {len(table)} rows of {len(table.columns)} columns to {len(paths)} TFRecord file(s) in {out}")
