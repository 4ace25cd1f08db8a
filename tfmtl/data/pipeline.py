"""tf.data input pipelines from pandas DataFrames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from tfmtl.errors import InputError
from tfmtl.features.spec import FeatureSpec
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


def dataset(
    df: pd.DataFrame,
    features: FeatureSpec,
    tasks: Sequence[Task] | None = None,
    *,
    batch_size: int = 1024,
    shuffle: bool = False,
    seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Returns a batched, prefetched `tf.data.Dataset` of raw model inputs (and labels).

    Elements are `inputs`, `(inputs, labels)` or `(inputs, labels, sample_weights)`
    dicts, as `MultiTaskModel.fit`, `evaluate` and `predict` expect. Columns are
    converted and checked once; batches are then gathered from whole-column tensors
    (one gather per column and batch, no per-example Python), with the order
    reshuffled every epoch when `shuffle` is set.

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
    columns = columns[0] if len(columns) == 1 else columns
    indices = tf.data.Dataset.range(len(df))
    if shuffle:
        indices = indices.shuffle(len(df), seed=seed, reshuffle_each_iteration=True)
    batches = indices.batch(batch_size, drop_remainder=drop_remainder)

    def gather(index: tf.Tensor) -> Any:
        return tf.nest.map_structure(lambda column: tf.gather(column, index), columns)

    return batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
