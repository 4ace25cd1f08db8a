"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.mixture_of_experts import MixtureOfExperts
from tfmtl.tasks.task import Task
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class MMoE(MultiTaskModel):
    """Shared experts, mixed for each task by its own softmax gate.

    Each task learns how much of each expert to use, so related tasks can share
    experts while conflicting ones keep apart.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s.
        num_experts: how many shared experts.
        expert_units: hidden sizes of each expert.
        expert_activation: their activation.
        **kwargs: `tower_units`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    train, test = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    model = MMoE(features, tasks, num_experts=8, expert_units=[64], tower_units=[32])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        num_experts: int = 8,
        expert_units: Sequence[int] = (64,),
        expert_activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        super().__init__(features, tasks, **kwargs)
        self.num_experts = num_experts
        self.expert_units = [int(u) for u in expert_units]
        self.expert_activation = expert_activation
        self.mixture = MixtureOfExperts(
            len(self.tasks),
            num_experts,
            self.expert_units,
            activation=expert_activation,
            dropout=self.dropout,
            name="mixture",
        )
        self.build()

    def build_body(self, input_shape: tuple) -> tuple:
        self.mixture.build(input_shape)
        return self.mixture.compute_output_shape(input_shape)

    def body(self, encoded: Any, training: bool | None = None) -> Any:
        return self.mixture(encoded, training=training)

    def task_specific_layers(self) -> list[keras.layers.Layer]:
        # Gate t only weighs experts for task t: its slice of the stacked gate kernel is task t's own.
        return [*super().task_specific_layers(), self.mixture.gate]

    def gate_weights(self, inputs: Mapping[str, Any]) -> Any:
        """Returns each task's weights over the experts, shape `(batch, tasks, experts)`."""
        _, weights = self.mixture(self.encoder(inputs), return_gate_weights=True)
        return weights

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            expert_units=self.expert_units,
            expert_activation=self.expert_activation,
        )
        return config
