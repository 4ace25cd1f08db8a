"""CustomizedGateControl: shared and task-specific experts, one extraction level of PLE."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.layers.gates import gate_kind, get_gate, offset_seed
from tfmtl.layers.parallel_mlp import ParallelMLP


@keras.saving.register_keras_serializable(package="tfmtl")
class CustomizedGateControl(keras.layers.Layer):
    """One extraction level of PLE: each task mixes the shared experts and its own.

    Task `t`'s gate weighs the `num_shared_experts` shared experts and the
    `num_task_experts` experts of task `t` alone, so a task can keep knowledge
    apart from the others (CGC, Tang et al., "Progressive Layered Extraction
    (PLE)", RecSys 2020). Stacking levels gives PLE: an inner level also returns a
    shared representation, mixed from all its experts by a shared gate, which
    the next level's shared experts read, while each task's experts read that
    task's representation. All experts of a kind are one `ParallelMLP`; gates
    are any gate of `tfmtl.layers.GATES`.

    Args:
        num_tasks: how many tasks.
        num_shared_experts: experts every task reads (>= 1).
        num_task_experts: experts of each task (>= 1).
        expert_units: hidden sizes of each expert.
        gate: the kind of every gate of the level, task gates and shared gate: a
            name or `{"name": ..., **options}` (see `get_gate`).
        shared_output: also return the shared gate's mixture (inner PLE levels).
        activation: expert activation.
        dropout: dropout after each expert layer.

    Call arguments:
        inputs: `(batch, input_dim)` read by every expert (first level), or
            `(batch, num_tasks + 1, input_dim)`: each task's representation, then
            the shared one (what an inner level returns).
        training: dropout, and the gates' noise and auxiliary losses.
        return_gate_weights: also return the gate weights over all experts
            (shared first, then each task's in task order), 0 where a gate cannot
            see an expert: `(batch, num_tasks [+ 1], experts)`.

    Returns:
        `(batch, num_tasks, expert_units[-1])`, or `(batch, num_tasks + 1, ...)`
        with `shared_output` (the shared mixture last).

    Example:

    ```python
    import numpy as np
    inner = CustomizedGateControl(2, 4, 2, [32], shared_output=True)
    last = CustomizedGateControl(2, 4, 2, [16])
    last(inner(np.ones((8, 20)))).shape   # (8, 2, 16)
    ```
    """

    def __init__(
        self,
        num_tasks: int,
        num_shared_experts: int,
        num_task_experts: int,
        expert_units: Sequence[int],
        gate: str | Mapping[str, Any] = "softmax",
        shared_output: bool = False,
        activation: str | None = "relu",
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_shared_experts < 1 or num_task_experts < 1:
            raise ValueError(
                f"num_shared_experts and num_task_experts must be >= 1, got {num_shared_experts}, {num_task_experts}"
            )
        self.num_tasks = num_tasks
        self.num_shared_experts = num_shared_experts
        self.num_task_experts = num_task_experts
        self.expert_units = [int(u) for u in expert_units]
        self.shared_output = shared_output
        self.activation = activation
        self.dropout = dropout
        self.shared_experts = ParallelMLP(
            num_shared_experts, self.expert_units, activation, dropout, name="shared_experts"
        )
        # Task t's experts are members t * num_task_experts ... (t + 1) * num_task_experts - 1.
        self.task_experts = ParallelMLP(
            num_tasks * num_task_experts, self.expert_units, activation, dropout, name="task_experts"
        )
        self.gate = gate_kind(gate)  # one kind, two sizes: task gates and the shared gate
        self.task_gates = get_gate(self.gate, num_tasks, num_shared_experts + num_task_experts, name="task_gates")
        self.shared_gate = None
        if shared_output:
            self.shared_gate = get_gate(offset_seed(self.gate, 1), 1, self.num_experts, name="shared_gate")

    @property
    def num_experts(self) -> int:
        return self.num_shared_experts + self.num_tasks * self.num_task_experts

    def _split(self, inputs: Any) -> tuple[Any, Any]:
        """Returns (what the task experts and gates read, what the shared experts read)."""
        if len(inputs.shape) == 2:
            return inputs, inputs
        return inputs[:, : self.num_tasks], inputs[:, self.num_tasks]

    def build(self, input_shape: tuple) -> None:
        shared_shape = (input_shape[0], input_shape[-1])
        task_shape = shared_shape if len(input_shape) == 2 else (input_shape[0], self.num_tasks, input_shape[-1])
        member_shape = (
            shared_shape if len(input_shape) == 2 else (input_shape[0], self.task_experts.parallel, input_shape[-1])
        )
        self.shared_experts.build(shared_shape)
        self.task_experts.build(member_shape)
        self.task_gates.build(task_shape)
        if self.shared_gate is not None:
            self.shared_gate.build(shared_shape)
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None, return_gate_weights: bool = False) -> Any:
        task_inputs, shared_input = self._split(inputs)
        per_member = task_inputs if len(inputs.shape) == 2 else ops.repeat(task_inputs, self.num_task_experts, axis=1)
        shared = self.shared_experts(shared_input, training=training)  # (batch, shared, units)
        specific = self.task_experts(per_member, training=training)  # (batch, tasks * own, units)
        units = self.expert_units[-1]
        own = ops.reshape(specific, (-1, self.num_tasks, self.num_task_experts, units))
        every_task = (ops.shape(shared)[0], self.num_tasks, self.num_shared_experts, units)
        # (batch, tasks, shared + own, units)
        visible = ops.concatenate([ops.broadcast_to(shared[:, None], every_task), own], axis=2)
        weights = self.task_gates(task_inputs, training=training)  # (batch, tasks, shared + own)
        # float32 weights (see the gates), mixed in the experts' dtype
        outputs = ops.einsum("bte,bteu->btu", ops.cast(weights, visible.dtype), visible)
        if self.shared_gate is None:
            return (outputs, self._spread(weights)) if return_gate_weights else outputs
        shared_weights = self.shared_gate(shared_input, training=training)  # (batch, 1, experts)
        everything = ops.concatenate([shared, specific], axis=1)
        shared_mixture = ops.einsum("bge,beu->bgu", ops.cast(shared_weights, everything.dtype), everything)
        outputs = ops.concatenate([outputs, shared_mixture], axis=1)
        if not return_gate_weights:
            return outputs
        return outputs, ops.concatenate([self._spread(weights), shared_weights], axis=1)

    def _spread(self, weights: Any) -> Any:
        """Task gates' weights `(batch, tasks, shared + own)` placed over all experts, 0 elsewhere."""
        shared, own = weights[..., : self.num_shared_experts], weights[..., self.num_shared_experts :]
        mine = ops.eye(self.num_tasks, dtype=own.dtype)[None, :, :, None]  # task t sees only block t of its experts
        blocks = ops.reshape(mine * own[:, :, None, :], (-1, self.num_tasks, self.num_tasks * self.num_task_experts))
        return ops.concatenate([shared, blocks], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.num_tasks + int(self.shared_output), self.expert_units[-1])

    def compute_output_spec(self, inputs: Any, training: bool | None = None, return_gate_weights: bool = False) -> Any:
        # In a functional model the output structure depends on return_gate_weights, which shapes alone do not say.
        outputs = keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)
        rows = self.num_tasks + int(self.shared_output)
        weights = keras.KerasTensor((inputs.shape[0], rows, self.num_experts), dtype="float32")
        return (outputs, weights) if return_gate_weights else outputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks,
            num_shared_experts=self.num_shared_experts,
            num_task_experts=self.num_task_experts,
            expert_units=self.expert_units,
            gate=self.gate,
            shared_output=self.shared_output,
            activation=self.activation,
            dropout=self.dropout,
        )
        return config

