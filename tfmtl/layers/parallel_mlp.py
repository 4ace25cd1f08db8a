"""ParallelMLP: a bank of same-shaped MLPs (experts, towers) computed together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.layers.parallel_dense import ParallelDense


@keras.saving.register_keras_serializable(package="tfmtl")
class ParallelMLP(keras.layers.Layer):
    """`parallel` feed-forward networks of the same shape, e.g. a bank of experts.

    Each depth of the bank is one `ParallelDense`, so the whole bank costs one
    batched matmul per depth, however many members it has.

    Args:
        parallel: how many networks.
        units: layer sizes of each network, first to last.
        activation: activation after every layer.
        dropout: dropout rate after every layer.

    Call arguments:
        inputs: `(batch, input_dim)` read by all members, or
            `(batch, parallel, input_dim)`, one input per member.
        scales: optional, one tensor per layer that multiplies that layer's
            input, broadcastable to `(batch, parallel, layer_input_dim)`
            (PEPNet's personalised layers).

    Returns:
        `(batch, parallel, units[-1])`.

    Example:

    ```python
    import numpy as np
    experts = ParallelMLP(parallel=8, units=[64])
    experts(np.ones((32, 100))).shape   # (32, 8, 64)
    ```
    """

    def __init__(
        self,
        parallel: int,
        units: Sequence[int],
        activation: str | None = "relu",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if parallel < 1:
            raise ValueError(f"parallel: expected >= 1, got {parallel}")
        if not units:
            raise ValueError("units: each network needs at least one layer")
        self.parallel = parallel
        self.units = [int(u) for u in units]
        self.activation = activation
        self.dropout = dropout
        self.dense_layers = [
            ParallelDense(parallel, u, activation=activation, name=f"layer_{i}") for i, u in enumerate(self.units)
        ]
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout else None

    def build(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)
        for layer in self.dense_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None, scales: Sequence[Any] | None = None) -> Any:
        if scales is not None and len(scales) != len(self.dense_layers):
            raise ValueError(f"scales: expected one per layer ({len(self.dense_layers)}), got {len(scales)}")
        x = inputs
        if scales is not None and len(x.shape) == 2:
            # One input for every column: give it the column axis that the per-column scales have.
            x = ops.expand_dims(x, 1)
        for i, layer in enumerate(self.dense_layers):
            x = layer(x if scales is None else ops.cast(scales[i], x.dtype) * x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.parallel, self.units[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(parallel=self.parallel, units=self.units, activation=self.activation, dropout=self.dropout)
        return config
