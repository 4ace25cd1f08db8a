"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018), and OMoE, its one-gate baseline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.gates import gate_kind
from tfmtl.layers.mixture_of_experts import MixtureOfExperts
from tfmtl.tasks.task import Task
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class MMoE(MultiTaskModel):
    """Shared experts, mixed for each task by its own softmax gate.

    Each task learns how much of each expert to use, so related tasks can share
    experts while conflicting ones keep apart. The gates are softmax gates by
    default; `gate="noisy_top_k"` (Shazeer et al., 2017) or `gate="dselect_k"`
    (Hazimeh et al., 2021), or a dict with options such as
    `{"name": "noisy_top_k", "k": 1}`, picks sparse ones.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s.
        num_experts: how many shared experts.
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
    model = MMoE(features, tasks, num_experts=8, expert_units=[64], tower_units=[32])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ```
    """

    one_gate = False

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        num_experts: int = 8,
        expert_units: Sequence[int] = (64,),
        expert_activation: str = "relu",
        gate: str | Mapping[str, Any] = "softmax",
        **kwargs: Any,
    ) -> None:
        super().__init__(features, tasks, **kwargs)
        self.num_experts = num_experts
        self.expert_units = [int(u) for u in expert_units]
        self.expert_activation = expert_activation
        self.gate = gate_kind(gate)
        self.mixture = MixtureOfExperts(
            len(self.tasks),
            num_experts,
            self.expert_units,
            num_gates=1 if self.one_gate else None,
            gate=self.gate,
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
        if self.one_gate:
            return super().task_specific_layers()
        # Gate t only weighs experts for task t: its slice of the stacked gate kernels is task t's own.
        return [*super().task_specific_layers(), self.mixture.gate]

    def gate_weights(self, inputs: Mapping[str, Any]) -> Any:
        """Returns each task's weights over the experts for raw `inputs`, shape `(batch, tasks, experts)`."""
        _, weights = self.mixture(self.encoder(inputs), return_gate_weights=True)
        return weights

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            expert_units=self.expert_units,
            expert_activation=self.expert_activation,
            gate=self.gate,
        )
        return config


@keras.saving.register_keras_serializable(package="tfmtl")
class OMoE(MMoE):
    """One-gate Mixture-of-Experts: all tasks read the same mixture of shared experts.

    The baseline of Ma et al. (KDD 2018) that MMoE improves on: with one gate the
    tasks cannot weigh the experts differently. Arguments are those of `MMoE`;
    `gate_weights` repeats the one gate's weights for every task.

    Example:

    ```python
    import keras, tfmtl
    train, test = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    model = OMoE(features, tasks, num_experts=8, expert_units=[64], tower_units=[32])
    ```
    """

    one_gate = True
