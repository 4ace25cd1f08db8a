"""STEM: shared and task-specific embeddings and experts (Su et al., AAAI 2024)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from tfmtl.errors import InputError
from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.parallel_dense import ParallelDense
from tfmtl.layers.parallel_mlp import ParallelMLP
from tfmtl.tasks.task import Task
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class STEM(MultiTaskModel):
    """Each task has its own embeddings and experts beside shared ones; a task's loss trains only its own.

    STEM-Net (Su et al., "STEM: Unleashing the Power of Embeddings for Multi-task
    Recommendation", AAAI 2024): besides the shared embedding table every task has
    its own embedding of each categorical feature, read by that task's experts;
    shared experts read the shared embeddings. Each task's softmax gate mixes all
    experts, but its loss reaches only the shared experts and its own ("all forward,
    task-specific backward"): other tasks' experts enter its mixture with their
    gradients stopped. So conflicting tasks cannot pull on each other's embeddings.
    The task embeddings of all tasks sit side by side in one table per embedding
    size (one gather for all tasks); numeric features are shared. List features have
    no task-specific embeddings.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s.
        num_shared_experts: experts on the shared embeddings.
        num_task_experts: experts per task on its own embeddings.
        expert_units: hidden sizes of each expert.
        expert_activation: their activation.
        **kwargs: `tower_units`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    train, test = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    model = STEM(features, tasks, num_shared_experts=2, num_task_experts=2, expert_units=[64])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        num_shared_experts: int = 2,
        num_task_experts: int = 2,
        expert_units: Sequence[int] = (64,),
        expert_activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        super().__init__(features, tasks, **kwargs)
        if num_shared_experts < 0:
            raise InputError(f"num_shared_experts: expected >= 0, got {num_shared_experts}")
        if num_task_experts < 1:
            raise InputError(f"num_task_experts: expected >= 1, got {num_task_experts}")
        self.num_shared_experts = num_shared_experts
        self.num_task_experts = num_task_experts
        self.expert_units = [int(u) for u in expert_units]
        self.expert_activation = expert_activation
        num_tasks = len(self.tasks)
        self._embedded = [layer for layer in self.encoder.field_embeddings if layer.has_fixed_fields]
        # Row r of a table holds every task's vector of row r of the shared table, side by side.
        self.task_tables = [
            keras.layers.Embedding(layer.num_rows, num_tasks * layer.embedding_dim, name=f"task_{layer.name}")
            for layer in self._embedded
        ]
        self.shared_experts = (
            ParallelMLP(num_shared_experts, self.expert_units, expert_activation, self.dropout, name="shared_experts")
            if num_shared_experts
            else None
        )
        self.task_experts = ParallelMLP(
            num_tasks * num_task_experts, self.expert_units, expert_activation, self.dropout, name="task_experts"
        )
        self.gate = ParallelDense(num_tasks, num_shared_experts + num_tasks * num_task_experts, name="gate")
        # own[t, j]: expert j is shared or task t's own, so task t's loss may reach it.
        own = np.zeros((num_tasks, num_shared_experts + num_tasks * num_task_experts), "float32")
        own[:, :num_shared_experts] = 1.0
        for t in range(num_tasks):
            start = num_shared_experts + t * num_task_experts
            own[t, start : start + num_task_experts] = 1.0
        self._own = own
        self.build()

    @property
    def task_input_dim(self) -> int:
        """Width of one task's expert input: its embeddings of every categorical field, then the numbers."""
        dim = sum(_fixed_fields(layer) * layer.embedding_dim for layer in self._embedded)
        numeric = self.encoder.numeric_encoder
        return dim + (numeric.output_dim if numeric is not None else 0)

    def build_body(self, input_shape: tuple) -> tuple:
        num_tasks, width = len(self.tasks), self.task_input_dim
        for table in self.task_tables:
            table.build((None, None))
        if self.shared_experts is not None:
            self.shared_experts.build(input_shape)
        self.task_experts.build((None, num_tasks * self.num_task_experts, width))
        self.gate.build((None, num_tasks, input_shape[1] + width))
        return (None, num_tasks, self.expert_units[-1])

    def _task_inputs(self, inputs: Mapping[str, Any]) -> Any:
        """Each task's expert input, `(batch, tasks, task_input_dim)`."""
        num_tasks = len(self.tasks)
        parts = []
        for layer, table in zip(self._embedded, self.task_tables):
            vectors = table(layer.ids(inputs))  # (batch, fields, tasks * dim)
            fields = _fixed_fields(layer)
            vectors = ops.reshape(vectors, (-1, fields, num_tasks, layer.embedding_dim))
            by_task = ops.transpose(vectors, (0, 2, 1, 3))  # (batch, tasks, fields, dim)
            parts.append(ops.reshape(by_task, (-1, num_tasks, fields * layer.embedding_dim)))
        numeric = self.encoder.numeric_encoder
        if numeric is not None:
            values = numeric(inputs)
            parts.append(ops.repeat(values[:, None, :], num_tasks, axis=1))
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)

    def _mixture(self, inputs: Mapping[str, Any], training: bool | None) -> tuple:
        if not self.encoder.is_preprocessed(inputs):
            # Raw values (serving): look up and standardise once for the shared and the task embeddings.
            inputs = {**inputs, **self.encoder.preprocess(inputs)}
        shared_input = self.encoder(inputs)
        task_input = self._task_inputs(inputs)
        num_tasks = len(self.tasks)
        experts = self.task_experts(ops.repeat(task_input, self.num_task_experts, axis=1), training=training)
        if self.shared_experts is not None:
            experts = ops.concatenate([self.shared_experts(shared_input, training=training), experts], axis=1)
        gate_input = ops.concatenate([ops.repeat(shared_input[:, None, :], num_tasks, axis=1), task_input], axis=-1)
        # In float32 under mixed precision, so that each row of weights sums to 1; mixed in the experts' dtype.
        weights = ops.softmax(ops.cast(self.gate(gate_input), "float32"), axis=-1)  # (batch, tasks, experts)
        mixing = ops.cast(weights, experts.dtype)
        own = ops.convert_to_tensor(self._own, dtype=mixing.dtype)
        # All forward, task-specific backward: the same mixture, with gradients only to own and shared experts.
        mixed = ops.matmul(mixing * own, experts) + ops.matmul(mixing * (1.0 - own), ops.stop_gradient(experts))
        return mixed, weights

    def task_representations(self, inputs: Mapping[str, Any], training: bool | None = None) -> Any:
        return self._mixture(inputs, training)[0]

    def body(self, encoded: Any, training: bool | None = None) -> Any:
        raise NotImplementedError("STEM reads the raw inputs (its task embeddings): use task_representations()")

    def task_specific_layers(self) -> list[keras.layers.Layer]:
        return [*super().task_specific_layers(), *self.task_tables, self.task_experts, self.gate]

    def gate_weights(self, inputs: Mapping[str, Any]) -> Any:
        """Each task's weights over the experts (shared ones first, then each task's), `(batch, tasks, experts)`."""
        return self._mixture(inputs, training=False)[1]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_shared_experts=self.num_shared_experts,
            num_task_experts=self.num_task_experts,
            expert_units=self.expert_units,
            expert_activation=self.expert_activation,
        )
        return config


def _fixed_fields(layer: Any) -> int:
    """How many single-valued (not list) features a `FieldEmbedding` embeds."""
    return len(layer.field_names) - len(layer.list_feature_names)
