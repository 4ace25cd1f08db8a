"""tf.data input pipelines from pandas DataFrames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfmtl.errors import InputError
from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.feature_encoder import FeatureEncoder
from tfmtl.layers.field_embedding import FieldEmbedding
from tfmtl.tasks.task import Task, check_tasks


def model_arrays(
    df: pd.DataFrame, features: FeatureSpec, tasks: Sequence[Task] | None = None
) -> tuple[dict[str, np.ndarray], ...]:
    """Returns `(inputs,)`, `(inputs, labels)` or `(inputs, labels, weights)` as numpy dicts.

    Inputs are keyed by feature name, labels and weights by task name; weights are
    only there when a task has a `sample_weight` column. Bad columns raise
    `InputError` naming the column.

    Example:

    ```python
    train, _ = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    inputs, labels = model_arrays(train.head(100), features, tasks)
    labels["income"].shape   # (100,)
    ```
    """
    _check_frame(df)
    return (features.input_arrays(df), *target_arrays(df, tasks))


def target_arrays(df: pd.DataFrame, tasks: Sequence[Task] | None) -> tuple[dict[str, np.ndarray], ...]:
    """`()`, `(labels,)` or `(labels, weights)` keyed by task name, as `model_arrays` gives them."""
    if not tasks:
        return ()
    tasks = check_tasks(tasks)
    labels = {t.name: t.label_values(df) for t in tasks}
    if not any(t.sample_weight for t in tasks):
        return (labels,)
    return labels, {t.name: t.weight_values(df) for t in tasks}


def _check_frame(df: Any) -> None:
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"data: expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise InputError("data: the DataFrame is empty")
    if df.columns.has_duplicates:
        raise InputError(f"data: duplicate column names {sorted(set(df.columns[df.columns.duplicated()]))}")


PREPROCESS_CHUNK = 65_536


def preprocessed(df: pd.DataFrame, features: FeatureSpec, fused: bool = True) -> dict[str, tf.Tensor]:
    """Runs the preprocessing of `features` over whole columns of `df`: what `FeatureEncoder.preprocess` gives.

    Memory stays near the size of the result: columns are converted one at a time,
    and a categorical or hashed column is looked up through its distinct values only
    (lookups and hashing act value by value), then spread to its rows by their codes,
    so the raw strings of the whole frame never exist at once.
    """
    features.check_columns(df)
    encoder = FeatureEncoder(features, fused=fused)  # its tables are never built: preprocessing only
    out: dict[str, tf.Tensor] = {}
    for layer in encoder.field_embeddings:
        if layer.has_fixed_fields:
            out[layer.ids_key] = tf.convert_to_tensor(_field_ids(layer, df, features))
        for name in layer.list_feature_names:
            out[name] = tf.convert_to_tensor(features[name].column_values(df[name]))
    numeric = encoder.numeric_encoder
    if numeric is not None:
        raw = {f.name: f.column_values(df[f.name]) for f in numeric.features}
        values = np.empty((len(df), numeric.output_dim), np.float32)
        for start in range(0, len(df), PREPROCESS_CHUNK):
            values[start : start + PREPROCESS_CHUNK] = numeric(
                {k: v[start : start + PREPROCESS_CHUNK] for k, v in raw.items()}
            )
        out[numeric.values_key] = tf.convert_to_tensor(values)
    return out


def _field_ids(layer: FieldEmbedding, df: pd.DataFrame, features: FeatureSpec) -> np.ndarray:
    """`layer.lookup_ids` of `df`'s rows, `(rows, fields)` int32, from each column's distinct values."""
    lists = set(layer.list_feature_names)
    names = [name for name in layer.field_names if name not in lists]  # lookup_ids' column order
    codes, distinct = [], []
    for name in names:
        # Factorized after conversion, so values are distinct exactly when their raw inputs are.
        row_codes, values = pd.factorize(features[name].column_values(df[name]), use_na_sentinel=False)
        codes.append(row_codes.astype(np.int32))
        distinct.append(values)
    longest = max(len(values) for values in distinct)
    table = np.empty((longest, len(names)), np.int32)
    for start in range(0, longest, PREPROCESS_CHUNK):
        positions = np.arange(start, min(start + PREPROCESS_CHUNK, longest))
        # Shorter value lists repeat their last value to fill the chunk; those rows go unused.
        chunk = {name: values[np.minimum(positions, len(values) - 1)] for name, values in zip(names, distinct)}
        table[positions] = layer.lookup_ids(chunk).numpy()
    ids = np.empty((len(df), len(names)), np.int32)
    for field, row_codes in enumerate(codes):
        ids[:, field] = table[row_codes, field]
    return ids


def dataset(
    df: pd.DataFrame,
    features: FeatureSpec,
    tasks: Sequence[Task] | None = None,
    *,
    batch_size: int = 1024,
    shuffle: bool = False,
    seed: int | None = None,
    drop_remainder: bool = False,
    preprocess: bool = True,
    fused: bool = True,
) -> tf.data.Dataset:
    """Returns a batched, prefetched `tf.data.Dataset` of raw model inputs (and labels).

    Elements are `inputs`, `(inputs, labels)` or `(inputs, labels, sample_weights)`
    dicts, as `MultiTaskModel.fit`, `evaluate` and `predict` expect. Columns are
    converted and checked once, and with `preprocess` (the default) the model's
    preprocessing (vocabulary lookups, hashing, standardisation) runs once over whole
    columns, so training steps only gather embeddings: the model accepts these
    preprocessed inputs as well as raw ones (`preprocess=False`, which is what a
    saved or served model is given). Batches are then gathered from whole-column
    tensors (one gather per column and batch, no per-example Python), with the
    order reshuffled every epoch when `shuffle` is set. Preprocessed inputs follow
    the model's embedding layout: pass `fused=False` for a model built with
    `fused_embeddings=False`.

    Example:

    ```python
    import tfmtl
    train, _ = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    spec = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    ds = tfmtl.data.dataset(train, spec, tasks, batch_size=1024, shuffle=True, seed=1)
    ```
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size: expected a positive integer, got {batch_size!r}")
    columns = column_tensors(df, features, tasks, preprocess=preprocess, fused=fused)
    return batches_of(columns, len(df), batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder)


def column_tensors(
    df: pd.DataFrame,
    features: FeatureSpec,
    tasks: Sequence[Task] | None = None,
    *,
    preprocess: bool = True,
    fused: bool = True,
) -> Any:
    """`df` as whole-column tensors: `inputs` or `(inputs, labels[, weights])`, checked and converted once."""
    _check_frame(df)
    if preprocess:
        inputs = preprocessed(df, features, fused)
    else:
        features.check_columns(df)
        # Column by column: one column's raw values at a time besides the tensors.
        inputs = {f.name: tf.convert_to_tensor(f.column_values(df[f.name])) for f in features}
    columns = (inputs, *tf.nest.map_structure(tf.convert_to_tensor, target_arrays(df, tasks)))
    return columns[0] if len(columns) == 1 else columns


def batches_of(
    columns: Any, rows: int, batch_size: int, *, shuffle: bool = False, seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches gathered from `column_tensors` (one gather per column and batch), prefetched."""
    batches = batch_indices(rows, batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder)

    def gather(index: tf.Tensor) -> Any:
        return tf.nest.map_structure(lambda column: tf.gather(column, index), columns)

    data = batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
    return data.with_options(_without_autotune_thread())


def _without_autotune_thread() -> tf.data.Options:
    """Options that keep tf.data's autotuning thread from starting: map and prefetch use fixed defaults.

    Deleting an iterator waits for that thread, and it sometimes missed the wake-up
    and slept out its period: 0.2 to 2.7 s stalls where Keras replaces or drops an
    iterator (every epoch's end, the end of `fit` and `predict`), seen in stack
    dumps of the reference run. Gathers of in-memory columns need no tuning.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def batch_indices(
    rows: int, batch_size: int, *, shuffle: bool = False, seed: int | None = None, drop_remainder: bool = False
) -> tf.data.Dataset:
    """A dataset of row-index batches; with `shuffle`, a new permutation every epoch.

    The permutation is drawn as one tensor per pass (not by a per-element shuffle
    buffer), so the cost per epoch is one shuffle of the index vector.
    """
    num_batches = rows // batch_size if drop_remainder else -(-rows // batch_size)

    def epoch(pass_seed: tf.Tensor) -> tf.data.Dataset:
        order = tf.range(rows, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=tf.stack([pass_seed, 0]))
        return tf.data.Dataset.range(num_batches).map(lambda b: order[b * batch_size : (b + 1) * batch_size])

    # One seed per pass over the data: the same sequence of permutations for a given `seed`.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    # flat_map hides the length; Keras needs it for progress bars and step counting.
    return seeds.flat_map(epoch).apply(tf.data.experimental.assert_cardinality(num_batches))
