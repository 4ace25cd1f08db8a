"""MixtureOfExperts: experts shared by all tasks, mixed by one gate per task (MMoE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.layers.gates import GateSpec, get_gate
from tfmtl.layers.parallel_mlp import ParallelMLP


@keras.saving.register_keras_serializable(package="tfmtl")
class MixtureOfExperts(keras.layers.Layer):
    """Mixes a bank of shared experts with one gate per task (Ma et al., KDD 2018).

    Task `t` gets `sum_e gate_t(x)[e] * expert_e(x)`. With `num_gates=1` every task
    reads the same mixture (OMoE). The gate is any gate of `tfmtl.layers.GATES`:
    softmax (MMoE), noisy top-k or DSelect-k.

    Args:
        num_tasks: how many task outputs.
        num_experts: how many shared experts.
        expert_units: hidden sizes of each expert.
        num_gates: gates to compute; 1 or `num_tasks` (default).
        gate: the gate: a name (`"softmax"`, `"noisy_top_k"`, `"dselect_k"`), a
            dict `{"name": ..., **options}` or a gate layer (see `get_gate`).
        activation: expert activation.
        dropout: dropout after each expert layer.

    Call arguments:
        inputs: `(batch, input_dim)`.
        training: dropout, and the gate's noise and auxiliary losses.
        return_gate_weights: also return the gate weights.

    Returns:
        `(batch, num_tasks, expert_units[-1])`, and with `return_gate_weights` the
        gate weights `(batch, num_tasks, num_experts)` as well.

    Example:

    ```python
    import numpy as np
    moe = MixtureOfExperts(num_tasks=2, num_experts=8, expert_units=[64])
    moe(np.ones((32, 100))).shape   # (32, 2, 64)
    sparse = MixtureOfExperts(2, 8, [64], gate={"name": "noisy_top_k", "k": 2})
    ```
    """

    def __init__(
        self,
        num_tasks: int,
        num_experts: int,
        expert_units: Sequence[int],
        num_gates: int | None = None,
        gate: GateSpec = "softmax",
        activation: str | None = "relu",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        num_gates = num_tasks if num_gates is None else num_gates
        if num_gates not in (1, num_tasks):
            raise ValueError(f"num_gates: expected 1 or num_tasks={num_tasks}, got {num_gates}")
        self.num_tasks = num_tasks
        self.num_experts = num_experts
        self.expert_units = [int(u) for u in expert_units]
        self.num_gates = num_gates
        self.activation = activation
        self.dropout = dropout
        self.experts = ParallelMLP(num_experts, self.expert_units, activation, dropout, name="experts")
        self.gate = get_gate(gate, num_gates, num_experts)

    def build(self, input_shape: tuple) -> None:
        self.experts.build(input_shape)
        if not self.gate.built:  # a deserialised or given gate may come built
            self.gate.build(input_shape)
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None, return_gate_weights: bool = False) -> Any:
        experts = self.experts(inputs, training=training)  # (batch, experts, units)
        weights = self.gate(inputs, training=training)  # (batch, gates, experts)
        # float32 weights (see the gates) mixed in the experts' dtype: (batch, gates, experts) @ (batch, experts, u)
        mixed = ops.matmul(ops.cast(weights, experts.dtype), experts)
        if self.num_gates != self.num_tasks:
            mixed = ops.repeat(mixed, self.num_tasks, axis=1)
            weights = ops.repeat(weights, self.num_tasks, axis=1)
        return (mixed, weights) if return_gate_weights else mixed

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.num_tasks, self.expert_units[-1])

    def compute_output_spec(self, inputs: Any, training: bool | None = None, return_gate_weights: bool = False) -> Any:
        # In a functional model the output structure depends on return_gate_weights, which shapes alone do not say.
        mixed = keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
        weights = keras.KerasTensor((inputs.shape[0], self.num_tasks, self.num_experts), dtype="float32")
        return (mixed, weights) if return_gate_weights else mixed

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks,
            num_experts=self.num_experts,
            expert_units=self.expert_units,
            num_gates=self.num_gates,
            gate=keras.saving.serialize_keras_object(self.gate),
            activation=self.activation,
            dropout=self.dropout,
        )
        return config
