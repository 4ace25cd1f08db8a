"""SharedBottom: one shared network under all task towers (Caruana, 1997)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.field_self_attention import FieldSelfAttention
from tfmtl.layers.field_tokens import FieldTokens
from tfmtl.layers.mlp import MLP
from tfmtl.tasks.task import Task
from tfmtl.zoo.field_attention import build_field_tokens, field_tokens
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class SharedBottom(MultiTaskModel):
    """Hard parameter sharing: all tasks read the output of one shared MLP.

    With `field_attention_layers > 0` the shared MLP reads, instead of the
    concatenated embeddings, the feature fields after AutoInt-style self-attention
    (`FieldSelfAttention` over `FieldTokens`), so all tasks share learned feature
    interactions.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s.
        bottom_units: hidden sizes of the shared MLP.
        bottom_activation: its activation.
        field_attention_layers: interacting layers of self-attention over the
            fields under the MLP (0: none).
        field_attention_heads: their attention heads.
        field_attention_units: their token size.
        **kwargs: `tower_units`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    train, test = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    model = SharedBottom(features, tasks, bottom_units=[128], tower_units=[32])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        bottom_units: Sequence[int] = (128,),
        bottom_activation: str = "relu",
        field_attention_layers: int = 0,
        field_attention_heads: int = 2,
        field_attention_units: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(features, tasks, **kwargs)
        self.bottom_units = [int(u) for u in bottom_units]
        self.bottom_activation = bottom_activation
        self.field_attention_layers = field_attention_layers
        self.field_attention_heads = field_attention_heads
        self.field_attention_units = field_attention_units
        self.field_tokens = self.field_attention = None
        if field_attention_layers:
            self.field_tokens = FieldTokens(field_attention_units, name="field_tokens")
            self.field_attention = FieldSelfAttention(
                field_attention_layers, field_attention_heads, field_attention_units, name="field_attention"
            )
        self.bottom = MLP(self.bottom_units, activation=bottom_activation, dropout=self.dropout, name="bottom")
        self.build()

    def build_body(self, input_shape: tuple) -> tuple:
        if self.field_attention is not None:
            tokens_shape = build_field_tokens(self.encoder, self.field_tokens)
            self.field_attention.build(tokens_shape)
            input_shape = (None, tokens_shape[1] * self.field_attention_units)
        self.bottom.build(input_shape)
        return self.bottom.compute_output_shape(input_shape)

    def task_representations(self, inputs: Mapping[str, Any], training: bool | None = None) -> Any:
        if self.field_attention is None:
            return super().task_representations(inputs, training=training)
        attended = self.field_attention(field_tokens(self.encoder, self.field_tokens, inputs), training=training)
        return self.body(ops.reshape(attended, (-1, attended.shape[1] * attended.shape[2])), training=training)

    def body(self, encoded: Any, training: bool | None = None) -> Any:
        return self.bottom(encoded, training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            bottom_units=self.bottom_units,
            bottom_activation=self.bottom_activation,
            field_attention_layers=self.field_attention_layers,
            field_attention_heads=self.field_attention_heads,
            field_attention_units=self.field_attention_units,
        )
        return config
