"""Where embedding tables live: keras-rs `DistributedEmbedding` on TPU SparseCore, else `keras.layers.Embedding`."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

_SPARSECORE: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("tfmtl_sparsecore", default=None)


def embedding_backend(distribution: tf.distribute.Strategy | None = None) -> str:
    """`"sparsecore"` under a TPUStrategy whose chips have SparseCore and with keras-rs installed, else `"keras"`.

    Example:

    ```python
    embedding_backend()   # "keras" on CPUs and GPUs
    ```
    """
    distribution = distribution or tf.distribute.get_strategy()
    if not isinstance(distribution, tf.distribute.TPUStrategy):
        return "keras"
    try:
        import keras_rs  # noqa: F401
    except ImportError:
        return "keras"
    feature = distribution.extended.tpu_hardware_feature.embedding_feature
    supported = tf.tpu.experimental.HardwareFeature.EmbeddingFeature
    return "sparsecore" if feature in (supported.V1, supported.V2) else "keras"


@contextlib.contextmanager
def sparsecore_tables(batch_size_per_host: int, optimizer: Any = "adam") -> Iterator[None]:
    """Inside, embedding tables of layers built under a SparseCore TPU go to SparseCore.

    SparseCore needs, when a table is created, how many ids one host looks up per step
    (`batch_size_per_host` times the fields per example) and the optimizer that updates
    the table there (SGD, Adagrad, Adam or FTRL; the model's optimizer updates
    everything else). `tfmtl train --strategy tpu` sets both.

    Example:

    ```python
    with strategy.scope(), sparsecore_tables(batch_size_per_host=4096):   # strategy: a TPUStrategy
        model = tfmtl.zoo.MMoE(features, tasks)
    ```
    """
    token = _SPARSECORE.set({"batch_size_per_host": int(batch_size_per_host), "optimizer": optimizer})
    try:
        yield
    finally:
        _SPARSECORE.reset(token)


def embedding_table(
    input_dim: int,
    output_dim: int,
    *,
    ids_per_example: int | None,
    embeddings_initializer: Any = "uniform",
    embeddings_regularizer: Any = None,
    name: str = "table",
) -> keras.layers.Layer:
    """A layer from row ids `(batch, ids_per_example)` to vectors `(batch, ids_per_example, output_dim)`.

    `keras.layers.Embedding`, except inside `sparsecore_tables` on a TPU with
    SparseCore, where it is a `SparseCoreEmbedding` (keras-rs `DistributedEmbedding`,
    the table sharded over the SparseCores). `ids_per_example=None` (a variable number
    of ids, as in pooled list features) always gets `keras.layers.Embedding`.

    Example:

    ```python
    import numpy as np
    table = embedding_table(1000, 8, ids_per_example=3)
    table(np.array([[1, 2, 3]])).shape   # (1, 3, 8)
    ```
    """
    settings = _SPARSECORE.get()
    if settings is None or ids_per_example is None or embedding_backend() != "sparsecore":
        return keras.layers.Embedding(
            input_dim, output_dim, embeddings_initializer=embeddings_initializer,
            embeddings_regularizer=embeddings_regularizer, name=name,
        )  # fmt: skip
    return SparseCoreEmbedding(
        input_dim, output_dim, ids_per_step=settings["batch_size_per_host"] * ids_per_example,
        embeddings_initializer=embeddings_initializer, optimizer=settings["optimizer"], name=name,
    )  # fmt: skip


@keras.saving.register_keras_serializable(package="tfmtl")
class SparseCoreEmbedding(keras.layers.Layer):
    """An embedding table in keras-rs' `DistributedEmbedding`: ids of any shape to vectors.

    All ids of a step are looked up as one feature of `ids_per_step` single ids, so one
    table serves every field of a fused embedding; the vectors come back in the ids'
    shape. `placement="sparsecore"` puts the table on TPU SparseCore (sharded over
    all chips: the table's size is bounded by the slice's memory, not one chip's);
    `"default_device"` keeps it in accelerator memory and works everywhere.

    Example:

    ```python
    table = SparseCoreEmbedding(1000, 8, ids_per_step=64, placement="default_device")
    table(np.zeros((16, 4), "int32")).shape   # (16, 4, 8)
    ```
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        ids_per_step: int,
        embeddings_initializer: Any = "uniform",
        optimizer: Any = "adam",
        placement: str = "sparsecore",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        import keras_rs

        self.input_dim, self.output_dim, self.ids_per_step = int(input_dim), int(output_dim), int(ids_per_step)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.optimizer = keras.optimizers.get(optimizer)
        self.placement = placement
        table = keras_rs.layers.TableConfig(
            name=f"{self.name}_rows", vocabulary_size=self.input_dim, embedding_dim=self.output_dim,
            initializer=self.embeddings_initializer, optimizer=self.optimizer, combiner="sum", placement=placement,
        )  # fmt: skip
        feature = keras_rs.layers.FeatureConfig(
            name="ids", table=table, input_shape=(self.ids_per_step,), output_shape=(self.ids_per_step, self.output_dim)
        )
        self.distributed = keras_rs.layers.DistributedEmbedding({"ids": feature}, name="distributed")

    def build(self, input_shape: Any = None) -> None:
        self.distributed.build({"ids": (self.ids_per_step,)})
        super().build(input_shape)

    def call(self, ids: Any) -> Any:
        flat = tf.reshape(ids, [-1])
        vectors = self.distributed({"ids": flat})["ids"]
        return tf.reshape(vectors, tf.concat([tf.shape(ids), [self.output_dim]], axis=0))

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (*input_shape, self.output_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            output_dim=self.output_dim,
            ids_per_step=self.ids_per_step,
            embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
            optimizer=keras.optimizers.serialize(self.optimizer),
            placement=self.placement,
        )
        return config
