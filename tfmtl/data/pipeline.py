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
from tfmtl.tasks.task import Task, check_tasks


def model_arrays(
    df: pd.DataFrame, features: FeatureSpec, tasks: Sequence[Task] | None = None
) -> tuple[dict[str, np.ndarray], ...]:
    """Returns `(inputs,)`, `(inputs, labels)` or `(inputs, labels, weights)` as numpy dicts.

    Inputs are keyed by feature name, labels and weights by task name; weights are
    only there when a task has a `sample_weight` column. Bad columns raise
    `InputError` naming the column.
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"data: expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise InputError("data: the DataFrame is empty")
    inputs = features.input_arrays(df)
    if not tasks:
        return (inputs,)
    tasks = check_tasks(tasks)
    labels = {t.name: t.label_values(df) for t in tasks}
    if not any(t.sample_weight for t in tasks):
        return inputs, labels
    return inputs, labels, {t.name: t.weight_values(df) for t in tasks}


PREPROCESS_CHUNK = 65_536


def preprocessed(inputs: dict[str, tf.Tensor], features: FeatureSpec) -> dict[str, tf.Tensor]:
    """Runs the preprocessing of `features` over whole columns, in chunks to bound memory."""
    encoder = FeatureEncoder(features)  # its tables are never built: preprocessing only
    rows = int(tf.shape(next(iter(inputs.values())))[0])
    chunks = [
        encoder.preprocess({k: v[start : start + PREPROCESS_CHUNK] for k, v in inputs.items()})
        for start in range(0, rows, PREPROCESS_CHUNK)
    ]
    return {key: tf.concat([chunk[key] for chunk in chunks], axis=0) for key in chunks[0]}


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
    order reshuffled every epoch when `shuffle` is set.

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
    arrays = model_arrays(df, features, tasks)
    columns = tf.nest.map_structure(tf.convert_to_tensor, arrays)
    if preprocess:
        columns = (preprocessed(columns[0], features), *columns[1:])
    columns = columns[0] if len(columns) == 1 else columns
    batches = batch_indices(len(df), batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder)

    def gather(index: tf.Tensor) -> Any:
        return tf.nest.map_structure(lambda column: tf.gather(column, index), columns)

    return batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


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
