"""MLP: a stack of dense layers with activation and dropout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras


@keras.saving.register_keras_serializable(package="tfmtl")
class MLP(keras.layers.Layer):
    """A feed-forward stack: `Dense(units) -> activation -> Dropout` for each size in `units`.

    Args:
        units: output size of each dense layer, first to last.
        activation: activation after each dense layer.
        dropout: dropout rate after each dense layer (0 for none).
        kernel_regularizer: optional regularizer of every kernel.

    Example:

    ```python
    import numpy as np
    bottom = MLP([128, 64], activation="relu", dropout=0.1)
    bottom(np.ones((32, 100))).shape   # (32, 64)
    ```
    """

    def __init__(
        self,
        units: Sequence[int],
        activation: str | None = "relu",
        dropout: float = 0.0,
        kernel_regularizer: str | keras.regularizers.Regularizer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not units or any(u < 1 for u in units):
            raise ValueError(f"units: expected a non-empty list of positive sizes, got {list(units)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a rate in [0, 1), got {dropout}")
        self.units = [int(u) for u in units]
        self.activation = activation
        self.dropout = dropout
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.dense_layers = [
            keras.layers.Dense(u, activation=activation, kernel_regularizer=self.kernel_regularizer, name=f"dense_{i}")
            for i, u in enumerate(self.units)
        ]
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout else None

    def build(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)
        for layer in self.dense_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        x = inputs
        for layer in self.dense_layers:
            x = layer(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.units[-1])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            units=self.units,
            activation=self.activation,
            dropout=self.dropout,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config
