"""TaskTowers: one small network per task, all computed together, ending in logits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.layers.parallel_dense import ParallelDense
from tfmtl.layers.parallel_mlp import ParallelMLP


@keras.saving.register_keras_serializable(package="tfmtl")
class TaskTowers(keras.layers.Layer):
    """Per-task towers `Dense -> ... -> Dense(output_units)` as batched matmuls.

    Args:
        num_tasks: how many towers.
        units: hidden sizes of each tower (may be empty: a linear head only).
        output_units: logits per task; tasks that need fewer read a prefix of them.
        activation: hidden activation.
        dropout: dropout after each hidden layer.

    Call arguments:
        inputs: `(batch, input_dim)` shared by all towers, or
            `(batch, num_tasks, input_dim)`, one representation per task.
        scales: optional, one tensor per layer (hidden layers, then the output
            layer) that multiplies that layer's input, broadcastable to
            `(batch, num_tasks, layer_input_dim)`.

    Returns:
        Logits of shape `(batch, num_tasks, output_units)`; `hidden_representations`
        and `output_logits` are the two halves of the call.

    Example:

    ```python
    import numpy as np
    towers = TaskTowers(num_tasks=2, units=[32])
    towers(np.ones((16, 2, 64))).shape   # (16, 2, 1)
    ```
    """

    def __init__(
        self,
        num_tasks: int,
        units: Sequence[int] = (),
        output_units: int = 1,
        activation: str | None = "relu",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_tasks = num_tasks
        self.units = [int(u) for u in units]
        self.output_units = output_units
        self.activation = activation
        self.dropout = dropout
        self.hidden = ParallelMLP(num_tasks, self.units, activation, dropout, name="hidden") if self.units else None
        self.output_layer = ParallelDense(num_tasks, output_units, name="logits")

    def build(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)
        if self.hidden is not None:
            self.hidden.build(shape)
            shape = self.hidden.compute_output_shape(shape)
        self.output_layer.build(shape)
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None, scales: Sequence[Any] | None = None) -> Any:
        if scales is not None and len(scales) != len(self.units) + 1:
            raise ValueError(f"scales: expected one per layer ({len(self.units) + 1}), got {len(scales)}")
        hidden_scales, output_scale = (None, None) if scales is None else (scales[:-1], scales[-1])
        x = inputs if self.hidden is None else self.hidden(inputs, training=training, scales=hidden_scales)
        return self.output_layer(x if output_scale is None else output_scale * x)

    def hidden_representations(self, inputs: Any, training: bool | None = None) -> Any:
        """Each tower's last hidden layer, `(batch, num_tasks, units[-1])`, before its output layer.

        Models that pass information between towers (AITM) work on these, then call
        `output_logits`. Without hidden layers, the input itself (one per tower).
        """
        if not self.built:
            self.build(tuple(inputs.shape))
        if self.hidden is not None:
            return self.hidden(inputs, training=training)
        if len(inputs.shape) == 2:
            return ops.repeat(ops.expand_dims(inputs, 1), self.num_tasks, axis=1)
        return inputs

    def output_logits(self, hidden: Any) -> Any:
        """The output layers on per-tower representations `(batch, num_tasks, dim)`: the logits."""
        return self.output_layer(hidden)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.num_tasks, self.output_units)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks,
            units=self.units,
            output_units=self.output_units,
            activation=self.activation,
            dropout=self.dropout,
        )
        return config
