"""SoftmaxGate: per-task softmax weights over experts, as in MMoE."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfmtl.layers.parallel_dense import ParallelDense


@keras.saving.register_keras_serializable(package="tfmtl")
class SoftmaxGate(keras.layers.Layer):
    """Computes `num_gates` softmax distributions over `num_experts` from one input.

    Gate `g` is `softmax(x W_g + b_g)`; all gates are one `ParallelDense`.

    Args:
        num_gates: how many gates (one per task in MMoE, one in OMoE).
        num_experts: how many experts each gate weighs.

    Call arguments:
        inputs: `(batch, input_dim)` read by every gate, or
            `(batch, num_gates, input_dim)`, one input per gate.

    Returns:
        Gate weights of shape `(batch, num_gates, num_experts)`; each row sums to 1.

    Example:

    ```python
    import numpy as np
    gate = SoftmaxGate(num_gates=2, num_experts=8)
    gate(np.ones((32, 100))).shape   # (32, 2, 8)
    ```
    """

    def __init__(self, num_gates: int, num_experts: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_gates = num_gates
        self.num_experts = num_experts
        self.logits = ParallelDense(num_gates, num_experts, name="logits")

    def build(self, input_shape: tuple) -> None:
        self.logits.build(input_shape)
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        # In float32 under mixed precision, so that each row of weights sums to 1.
        return ops.softmax(ops.cast(self.logits(inputs), "float32"), axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.num_gates, self.num_experts)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_gates=self.num_gates, num_experts=self.num_experts)
        return config
