"""Input pipelines split over replicas and workers with `distribute_datasets_from_function`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import tensorflow as tf

from tfmtl.data.pipeline import batches_of, column_tensors, dataset
from tfmtl.errors import InputError
from tfmtl.features.spec import FeatureSpec
from tfmtl.tasks.task import Task


def _replica_pieces(batches: tf.data.Dataset, first: int, stride: int, count: int) -> tf.data.Dataset:
    """Each batch becomes `count` per-replica batches: rows `first + i :: stride` for i < count."""

    def split(*batch: Any) -> tf.data.Dataset:
        batch = batch[0] if len(batch) == 1 else batch

        def piece(i: tf.Tensor) -> Any:
            return tf.nest.map_structure(lambda column: column[first + tf.cast(i, tf.int32) :: stride], batch)

        return tf.data.Dataset.range(count).map(piece)

    return batches.flat_map(split)


def _explicit_sharding(data: tf.data.Dataset) -> tf.data.Dataset:
    # The function below already gives each input pipeline its own rows or files.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return data.with_options(options)


def distributed_dataset(
    distribution: tf.distribute.Strategy,
    data: pd.DataFrame | Sequence[str] | str,
    features: FeatureSpec,
    tasks: Sequence[Task] | None = None,
    *,
    global_batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    drop_remainder: bool = False,
    fused: bool = True,
) -> tf.distribute.DistributedDataset:
    """Batches of `global_batch_size` examples split over the replicas of `distribution`.

    `batch_size` semantics: every training step reads one global batch; each replica
    gets `global_batch_size / num_replicas_in_sync` of its examples. tfmtl's losses are
    means over the global batch, so a step is the same update on one device or many.

    - A DataFrame: every worker holds the table and takes its replicas' rows of each
      global batch (replica r gets rows `r::replicas` of the batch), so training sees
      the same global batches, in the same order, as a single-device run with the same
      seed.
    - TFRecord files (`tfmtl data to-tfrecord`), as a folder, a glob or a list: each
      worker reads only its own files (file `i` goes to input pipeline
      `i % num_input_pipelines`), so there should be at least as many files as
      workers; batches then mix rows of the worker's own files only.

    Auto-sharding is switched off explicitly: the sharding above is the whole of it.
    TPUs need static shapes: pass `drop_remainder=True` there. `fused` is the model's
    `fused_embeddings`, as in `tfmtl.data.dataset`.

    Example:

    ```python
    strategy = tfmtl.distribute.strategy("auto")
    with strategy.scope():
        model = tfmtl.zoo.MMoE(spec, tasks)
        model.compile()
    train = tfmtl.distribute.distributed_dataset(
        strategy, df, spec, tasks, global_batch_size=1024, shuffle=True, seed=1
    )
    model.fit(train, epochs=2)
    ```
    """
    if not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise InputError(f"global_batch_size: expected a positive integer, got {global_batch_size!r}")
    replicas = distribution.num_replicas_in_sync
    if global_batch_size < replicas:
        raise InputError(f"batch size {global_batch_size} is below the {replicas} replicas: give each at least one")
    if drop_remainder and global_batch_size % replicas:
        raise InputError(f"batch size {global_batch_size} must be a multiple of the {replicas} replicas here")
    if isinstance(data, pd.DataFrame):
        return _from_frame(distribution, data, features, tasks, global_batch_size, shuffle, seed, drop_remainder,
                           fused)  # fmt: skip
    from tfmtl.distribute.tfrecord import list_shards

    files = list_shards(data)
    return _from_files(distribution, files, features, tasks, global_batch_size, shuffle, seed, drop_remainder,
                       fused)  # fmt: skip


def _from_frame(  # noqa: ANN201
    distribution, df, features, tasks, global_batch_size, shuffle, seed, drop_remainder, fused  # noqa: ANN001
):
    replicas = distribution.num_replicas_in_sync
    # Converted and checked once, not once per pipeline.
    columns = column_tensors(df, features, tasks, fused=fused)

    def pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines
        # Each pipeline draws its own sequence of permutations, the same as on one device.
        whole = batches_of(columns, len(df), global_batch_size, shuffle=shuffle, seed=seed,
                           drop_remainder=drop_remainder)  # fmt: skip
        pieces = _replica_pieces(whole, context.input_pipeline_id * local, replicas, local)
        if local == 1:
            # One element per step, as Keras counts steps: it then starts each epoch's pass
            # over the data exactly as on one device (so the same per-epoch permutations).
            # Without a known length Keras calls the train function once more at each epoch's
            # end, and under several replicas that call counts an optimizer iteration.
            pieces = pieces.apply(tf.data.experimental.assert_cardinality(whole.cardinality()))
        return _explicit_sharding(pieces.prefetch(tf.data.AUTOTUNE))

    options = None
    if isinstance(distribution, tf.distribute.MirroredStrategy):
        # A pipeline per replica (only MirroredStrategy has them), so one element per step.
        per_replica = tf.distribute.InputReplicationMode.PER_REPLICA
        options = tf.distribute.InputOptions(experimental_replication_mode=per_replica)
    return distribution.distribute_datasets_from_function(pipeline, options=options)


def _from_files(  # noqa: ANN201
    distribution, files, features, tasks, global_batch_size, shuffle, seed, drop_remainder, fused  # noqa: ANN001
):
    from tfmtl.distribute.tfrecord import read_tfrecords

    replicas = distribution.num_replicas_in_sync

    def pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
        own = files[context.input_pipeline_id :: context.num_input_pipelines]
        if not own:
            raise InputError(
                f"{len(files)} TFRecord file(s) for {context.num_input_pipelines} workers: "
                "write at least one file per worker (tfmtl data to-tfrecord --shards N)"
            )
        local = replicas // context.num_input_pipelines
        per_replica = context.get_per_replica_batch_size(global_batch_size) if drop_remainder else None
        batch_size = local * (per_replica or -(-global_batch_size // replicas))
        batches = dataset(read_tfrecords(own), features, tasks, batch_size=batch_size, shuffle=shuffle, seed=seed,
                          drop_remainder=drop_remainder, fused=fused)  # fmt: skip
        return _explicit_sharding(_replica_pieces(batches, 0, local, local).prefetch(tf.data.AUTOTUNE))

    return distribution.distribute_datasets_from_function(pipeline)
