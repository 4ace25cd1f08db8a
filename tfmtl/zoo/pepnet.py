"""PEPNet: the Parameter and Embedding Personalized Network (Chang et al., KDD 2023)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.errors import InputError
from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.gate_neural_unit import GateNeuralUnit
from tfmtl.tasks.task import Task
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class PEPNet(MultiTaskModel):
    """Embeddings scaled per domain and every tower layer scaled per user and task, by gates on prior features.

    Chang et al., "PEPNet: Parameter and Embedding Personalized Network for
    Infusing with Personalized Prior Information", KDD 2023. Two kinds of
    `GateNeuralUnit` personalise a plain multi-task network:
    - EPNet: a gate on the domain features' embeddings (the scenario, page or
      app a request comes from) and the stop-gradient of all embeddings scales
      every column of the shared embedding, so one table serves every domain.
    - PPNet: for every layer of every task's tower, a gate on the personal
      features' embeddings (user, item, author ids) and the stop-gradient of the
      EPNet output scales that layer's input, per task.
    The stop-gradients keep the gates from pulling on the embeddings they scale.
    Without domain (or personal) features the gates read the embeddings alone.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s.
        domain_features: names of the features EPNet's gate reads.
        personal_features: names of the features PPNet's gates read.
        tower_units: hidden sizes of each task's tower (at least one layer).
        gate_units: hidden size of every gate.
        gate_scale: the largest scale a gate gives (`gamma`; 2 leaves an untrained gate near 1).
        **kwargs: `tower_activation`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    train, test = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    model = PEPNet(features, tasks, domain_features=["class_worker"], personal_features=["age", "sex"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(tfmtl.data.dataset(train, features, tasks, batch_size=1024, shuffle=True), epochs=1)
    ```
    """

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        domain_features: Sequence[str] = (),
        personal_features: Sequence[str] = (),
        tower_units: Sequence[int] = (64, 32),
        gate_units: int = 64,
        gate_scale: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(features, tasks, tower_units=tower_units, **kwargs)
        if not self.tower_units:
            raise InputError("tower_units: PEPNet personalises tower layers, give at least one")
        if gate_units < 1 or gate_scale <= 0:
            raise InputError(f"gate_units, gate_scale: expected >= 1 and > 0, got {gate_units}, {gate_scale}")
        self.domain_features = list(domain_features)
        self.personal_features = list(personal_features)
        self.gate_units = int(gate_units)
        self.gate_scale = float(gate_scale)
        self._domain_columns = self.encoder.columns(self.domain_features)
        self._personal_columns = self.encoder.columns(self.personal_features)
        width = self.encoder.output_dim
        self.embedding_gate = GateNeuralUnit(self.gate_units, width, self.gate_scale, name="embedding_gate")
        # One gate per tower layer gives the scales of all tasks' towers at once.
        self.tower_gates = [
            GateNeuralUnit(self.gate_units, len(self.tasks) * units, self.gate_scale, name=f"tower_gate_{i}")
            for i, units in enumerate([width, *self.tower_units])
        ]
        self.build()

    def build_body(self, input_shape: tuple) -> tuple:
        width = input_shape[-1]
        self.embedding_gate.build((None, len(self._domain_columns) + width))
        for gate in self.tower_gates:
            gate.build((None, len(self._personal_columns) + width))
        return input_shape

    @staticmethod
    def _prior(encoded: Any, columns: list[int], representation: Any) -> Any:
        gated = ops.stop_gradient(representation)
        return ops.concatenate([ops.take(encoded, columns, axis=1), gated], axis=1) if columns else gated

    def body(self, encoded: Any, training: bool | None = None) -> Any:
        """EPNet: the encoded features scaled by the domain gate."""
        scales = self.embedding_gate(self._prior(encoded, self._domain_columns, encoded))
        # Under mixed precision the encoder keeps float32 outputs; the gate computes in the policy's dtype.
        return ops.cast(scales, encoded.dtype) * encoded

    def task_representations(self, inputs: Mapping[str, Any], training: bool | None = None) -> tuple:
        """The personalised embedding and the personal prior the tower gates read."""
        encoded = self.encoder(inputs)
        personalised = self.body(encoded, training=training)
        return personalised, self._prior(encoded, self._personal_columns, personalised)

    def tower_logits(self, representations: tuple, training: bool | None = None) -> Any:
        personalised, prior = representations
        num_tasks = len(self.tasks)
        widths = [personalised.shape[-1], *self.tower_units]
        scales = [ops.reshape(gate(prior), (-1, num_tasks, width)) for gate, width in zip(self.tower_gates, widths)]
        # One input row for all towers: the first scales make it one per task.
        return self.towers(ops.expand_dims(personalised, 1), training=training, scales=scales)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            domain_features=self.domain_features,
            personal_features=self.personal_features,
            gate_units=self.gate_units,
            gate_scale=self.gate_scale,
        )
        return config
