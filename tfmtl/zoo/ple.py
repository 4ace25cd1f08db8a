"""PLE: Progressive Layered Extraction (Tang et al., RecSys 2020)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from tfmtl.errors import InputError
from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.customized_gate_control import CustomizedGateControl
from tfmtl.layers.gates import gate_kind, offset_seed
from tfmtl.tasks.task import Task
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class PLE(MultiTaskModel):
    """Stacked extraction levels of shared and task-specific experts.

    Each level is a `CustomizedGateControl`: every task mixes the shared experts
    and its own experts with its own gate. Inner levels also mix all their experts
    with a shared gate into the shared representation the next level's shared
    experts read, while each task's experts read that task's representation. With
    `num_levels=1` this is CGC. Tang et al., "Progressive Layered Extraction (PLE):
    A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations",
    RecSys 2020.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s.
        num_levels: extraction levels (>= 1).
        num_shared_experts: shared experts per level.
        num_task_experts: experts of each task per level.
        expert_units: hidden sizes of each expert.
        expert_activation: their activation.
        gate: the gate kind: a name of `tfmtl.layers.GATES` or
            `{"name": ..., **options}`.
        **kwargs: `tower_units`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    train, test = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    model = PLE(features, tasks, num_levels=1, num_shared_experts=4, num_task_experts=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        num_levels: int = 1,
        num_shared_experts: int = 4,
        num_task_experts: int = 2,
        expert_units: Sequence[int] = (64,),
        expert_activation: str = "relu",
        gate: str | Mapping[str, Any] = "softmax",
        **kwargs: Any,
    ) -> None:
        super().__init__(features, tasks, **kwargs)
        if num_levels < 1:
            raise InputError(f"num_levels: expected >= 1, got {num_levels}")
        self.num_levels = num_levels
        self.num_shared_experts = num_shared_experts
        self.num_task_experts = num_task_experts
        self.expert_units = [int(u) for u in expert_units]
        self.expert_activation = expert_activation
        self.gate = gate_kind(gate)
        self.levels = [
            CustomizedGateControl(
                len(self.tasks),
                num_shared_experts,
                num_task_experts,
                self.expert_units,
                gate=offset_seed(self.gate, 2 * level),  # a seeded gate draws other noise at every level
                shared_output=level < num_levels - 1,
                activation=expert_activation,
                dropout=self.dropout,
                name=f"level_{level}",
            )
            for level in range(num_levels)
        ]
        self.build()

    def build_body(self, input_shape: tuple) -> tuple:
        shape = input_shape
        for level in self.levels:
            level.build(shape)
            shape = level.compute_output_shape(shape)
        return shape

    def body(self, encoded: Any, training: bool | None = None) -> Any:
        x = encoded
        for level in self.levels:
            x = level(x, training=training)
        return x

    def task_specific_layers(self) -> list[keras.layers.Layer]:
        # Only task t's loss reaches task t's gate in the last level and in the level before it
        # (it gates what task t's experts and gate read next), and task t's experts of the last
        # level. Deeper down everything also feeds a shared gate, so every task reaches it.
        last = self.levels[-1]
        specific = [last.task_gates, last.task_experts]
        if len(self.levels) > 1:
            specific.append(self.levels[-2].task_gates)
        return [*super().task_specific_layers(), *specific]

    def gate_weights(self, inputs: Mapping[str, Any], level: int = -1) -> Any:
        """Each task's gate weights over all experts of a level (default: the last), for raw `inputs`.

        Returns `(batch, tasks, experts)`: shared experts first, then each task's own,
        in task order; 0 for the experts a task's gate cannot see.
        """
        levels = self.levels[: range(self.num_levels)[level] + 1]
        x = self.encoder(inputs)
        for extraction in levels[:-1]:
            x = extraction(x)
        _, weights = levels[-1](x, return_gate_weights=True)
        return weights[:, : len(self.tasks)]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_levels=self.num_levels,
            num_shared_experts=self.num_shared_experts,
            num_task_experts=self.num_task_experts,
            expert_units=self.expert_units,
            expert_activation=self.expert_activation,
            gate=self.gate,
        )
        return config
