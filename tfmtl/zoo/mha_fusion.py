"""MHAFusion: tasks choose what to share by multi-head attention over experts and fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.field_self_attention import FieldSelfAttention
from tfmtl.layers.field_tokens import FieldTokens
from tfmtl.layers.parallel_mlp import ParallelMLP
from tfmtl.layers.task_attention_fusion import TaskAttentionFusion
from tfmtl.tasks.task import Task
from tfmtl.zoo.field_attention import build_field_tokens, field_tokens
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class MHAFusion(MultiTaskModel):
    """Shared experts, read by each task through multi-head attention with its own query.

    A bank of experts turns the shared input into expert tokens; each task's learned
    query attends over them (`TaskAttentionFusion`, with
    `keras.layers.MultiHeadAttention`), so each head of each task weighs the experts
    per example, where MMoE has one softmax gate per task. With `attend_fields` the
    tasks also attend over the feature fields themselves (one token per field).
    With `field_attention_layers > 0` a shared AutoInt-style encoder
    (`FieldSelfAttention`) first lets the fields attend to each other; the experts
    read its output, and the field tokens the tasks see are its output too.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s.
        num_experts: how many experts.
        expert_units: hidden sizes of each expert; the last is the token size.
        expert_activation: their activation.
        num_heads: attention heads of the fusion.
        attend_fields: tasks attend over field tokens as well as experts.
        field_attention_layers: interacting layers of the shared field encoder (0: none).
        field_attention_heads: their attention heads.
        **kwargs: `tower_units`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    train, test = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    model = MHAFusion(features, tasks, num_experts=8, expert_units=[64], attend_fields=True)
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
        num_heads: int = 2,
        attend_fields: bool = False,
        field_attention_layers: int = 0,
        field_attention_heads: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(features, tasks, **kwargs)
        self.num_experts = num_experts
        self.expert_units = [int(u) for u in expert_units]
        self.expert_activation = expert_activation
        self.num_heads = num_heads
        self.attend_fields = attend_fields
        self.field_attention_layers = field_attention_layers
        self.field_attention_heads = field_attention_heads
        units = self.expert_units[-1]
        uses_fields = attend_fields or field_attention_layers > 0
        self.field_tokens = FieldTokens(units, name="field_tokens") if uses_fields else None
        self.field_attention = (
            FieldSelfAttention(field_attention_layers, field_attention_heads, units, name="field_attention")
            if field_attention_layers
            else None
        )
        self.experts = ParallelMLP(num_experts, self.expert_units, expert_activation, self.dropout, name="experts")
        self.fusion = TaskAttentionFusion(len(self.tasks), num_heads, dropout=self.dropout, name="fusion")
        self.build()

    def build_body(self, input_shape: tuple) -> tuple:
        tokens = (None, self.num_experts, self.expert_units[-1])
        if self.field_tokens is not None:
            fields = build_field_tokens(self.encoder, self.field_tokens)
            if self.field_attention is not None:
                self.field_attention.build(fields)
                input_shape = (None, fields[1] * fields[2])
            if self.attend_fields:
                tokens = (None, tokens[1] + fields[1], tokens[2])
        self.experts.build(input_shape)
        self.fusion.build(tokens)
        return self.fusion.compute_output_shape(tokens)

    def body(self, encoded: Any, training: bool | None = None, fields: Any = None) -> Any:
        """Experts over `encoded`, then the tasks' attention over them (and `fields`, if given)."""
        return self._fuse(encoded, fields, training)

    def _fuse(self, encoded: Any, fields: Any, training: bool | None, return_attention_scores: bool = False) -> Any:
        tokens = self.experts(encoded, training=training)
        if fields is not None:
            tokens = ops.concatenate([tokens, fields], axis=1)
        return self.fusion(tokens, training=training, return_attention_scores=return_attention_scores)

    def _shared_inputs(self, inputs: Mapping[str, Any], training: bool | None) -> tuple:
        """(what the experts read, the field tokens the tasks attend over or None)."""
        if self.field_tokens is None:
            return self.encoder(inputs), None
        fields = field_tokens(self.encoder, self.field_tokens, inputs)
        if self.field_attention is None:
            encoded = self.encoder(inputs)
        else:
            fields = self.field_attention(fields, training=training)
            encoded = ops.reshape(fields, (-1, fields.shape[1] * fields.shape[2]))
        return encoded, fields if self.attend_fields else None

    def task_representations(self, inputs: Mapping[str, Any], training: bool | None = None) -> Any:
        encoded, fields = self._shared_inputs(inputs, training)
        return self.body(encoded, training=training, fields=fields)

    def task_specific_layers(self) -> list[keras.layers.Layer]:
        # Query t only shapes task t's attention; the attention's projections serve every task.
        return [*super().task_specific_layers(), self.fusion.task_queries]

    def gate_weights(self, inputs: Mapping[str, Any]) -> Any:
        """Each task's attention over the tokens (experts, then fields), averaged over heads.

        Returns `(batch, tasks, tokens)` for raw `inputs`, in float32; each row sums to 1
        (under mixed precision to within the compute dtype's rounding: Keras'
        `MultiHeadAttention` takes its softmax in that dtype).
        """
        encoded, fields = self._shared_inputs(inputs, training=False)
        _, scores = self._fuse(encoded, fields, training=False, return_attention_scores=True)
        return ops.mean(ops.cast(scores, "float32"), axis=1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            expert_units=self.expert_units,
            expert_activation=self.expert_activation,
            num_heads=self.num_heads,
            attend_fields=self.attend_fields,
            field_attention_layers=self.field_attention_layers,
            field_attention_heads=self.field_attention_heads,
        )
        return config
