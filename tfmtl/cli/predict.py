"""`tfmtl predict`: batch inference on a CSV or Parquet table, read and written in chunks."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tfmtl.data import dataset, write_atomically
from tfmtl.errors import InputError
from tfmtl.features.feature import STRING
from tfmtl.zoo import MultiTaskModel

_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")


def _table_format(path: Path, argument: str) -> str:
    name = path.name.lower()
    if name.endswith(_PARQUET):
        return "parquet"
    if name.endswith(_CSV):
        return "csv"
    raise InputError(f"{argument}: expected a file ending in one of {', '.join(_CSV + _PARQUET)}, got {str(path)!r}")


def read_chunks(
    path: str | Path, rows: int, text_columns: Sequence[str] = (), argument: str = "--data"
) -> Iterator[pd.DataFrame]:
    """Yields a CSV (optionally gzipped) or Parquet table `rows` rows at a time, never all at once.

    CSV columns in `text_columns` are read as text, so a category such as `"07"`
    reads the same in every chunk whatever the other chunks hold. `argument`
    names the file in error messages.
    """
    path = Path(path)
    table_format = _table_format(path, argument)
    if not path.is_file():
        raise InputError(f"{argument}: file {str(path)!r} does not exist")
    if table_format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                yield batch.to_pandas()
        except (pa.ArrowException, OSError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise InputError(f"{argument}: {str(path)!r} could not be read: {first_line}") from None
        return
    sep = "\t" if ".tsv" in path.name.lower() else ","
    try:
        with pd.read_csv(path, sep=sep, skipinitialspace=True, chunksize=rows,
                         dtype={column: str for column in text_columns}) as reader:
            yield from reader
    except pd.errors.EmptyDataError:
        raise InputError(f"{argument}: file {str(path)!r} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as error:  # OSError: e.g. not gzip
        raise InputError(f"{argument}: {str(path)!r} could not be read: {str(error).strip().splitlines()[0]}") from None


def prediction_columns(model: MultiTaskModel, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One column per output; a `(rows, n)` output gets one column per class, `<output>_<class>`."""
    classes = {task.name: task.classes for task in model.tasks if task.classes is not None}
    columns = {}
    for name, values in outputs.items():
        values = np.asarray(values)
        if values.ndim == 1:
            columns[name] = values
            continue
        labels = classes.get(name) or range(values.shape[1])
        columns.update({f"{name}_{label}": values[:, i] for i, label in enumerate(labels)})
    return columns


def predict_chunks(
    model: MultiTaskModel, chunks: Iterable[pd.DataFrame], batch_size: int, keep: Sequence[str] = ()
) -> Iterator[pd.DataFrame]:
    """Yields, per chunk of raw rows, the `keep` columns followed by the model's prediction columns."""
    start = 0
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        missing = [column for column in keep if column not in chunk.columns]
        if missing:
            raise InputError(f"--keep: column(s) {missing} are not in the data")
        try:
            inputs = dataset(chunk, model.feature_spec, batch_size=batch_size, fused=model.fused_embeddings)
        except InputError as error:
            raise InputError(f"--data rows {start + 1}-{start + len(chunk)}: {error}") from None
        start += len(chunk)
        outputs = model.predict(inputs, verbose=0)
        predictions = prediction_columns(model, outputs)
        clash = sorted(set(keep) & set(predictions))
        if clash:
            raise InputError(f"--keep: column(s) {clash} have the name of a prediction column")
        kept = {column: chunk[column].to_numpy() for column in keep}
        yield pd.DataFrame({**kept, **predictions})


def _write_parquet(path: str, chunks: Iterable[pd.DataFrame]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, writer = 0, None
    try:
        for chunk in chunks:
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            if writer is None:
                # A kept column with no value in the first chunk has no type yet: kept columns are read as text.
                schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema])
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(table.cast(writer.schema))
            rows += len(chunk)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _write_csv(path: str, chunks: Iterable[pd.DataFrame], sep: str, compressed: bool) -> int:
    rows = 0
    with (gzip.open if compressed else open)(path, "wt", newline="") as handle:
        for chunk in chunks:
            chunk.to_csv(handle, sep=sep, header=rows == 0, index=False)
            rows += len(chunk)
    return rows


def write_chunks(path: str | Path, chunks: Iterable[pd.DataFrame]) -> int:
    """Writes the chunks one after another as one CSV or Parquet file, atomically; returns the rows."""
    path = Path(path)
    name = path.name.lower()
    table_format = _table_format(path, "--out")
    rows = 0

    def write(temporary: str) -> None:
        nonlocal rows
        if table_format == "parquet":
            rows = _write_parquet(temporary, chunks)
        else:
            rows = _write_csv(temporary, chunks, "\t" if ".tsv" in name else ",", name.endswith(".gz"))
        if rows == 0:
            raise InputError("--data: the file has no rows")

    write_atomically(path, write)
    return rows


def run_prediction(
    model: MultiTaskModel, data: str, out: str, batch_size: int, chunk_rows: int, keep: Sequence[str] = ()
) -> int:
    """Predicts every row of `data` and writes `keep` plus one column per output to `out`; returns the rows."""
    for argument, value in (("--batch-size", batch_size), ("--chunk-rows", chunk_rows)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{argument}: expected a positive integer, got {value!r}")
    text = [f.name for f in model.feature_spec if f.dtype == STRING] + list(keep)
    chunks = read_chunks(data, chunk_rows, text_columns=text)
    rows = write_chunks(out, predict_chunks(model, chunks, batch_size, keep))
    print(f"predicted {rows} rows; written to {out}")
    return rows
