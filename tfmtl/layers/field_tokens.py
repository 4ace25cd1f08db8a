"""FieldTokens: every feature field as one vector of the same size, for attention over fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfmtl")
class FieldTokens(keras.layers.Layer):
    """Projects field embeddings of any sizes, and numeric columns, to tokens of one size.

    Attention over fields needs one vector per field, all of one size. Each group of
    field embeddings (one `(batch, fields, dim)` tensor per embedding size, as
    `FeatureEncoder.embed_fields` returns them) goes through its own linear
    projection to `units`; numeric column `m` becomes `x_m * v_m + b_m` with learned
    vectors, as in AutoInt (Song et al., CIKM 2019).

    Args:
        units: size of every token.

    Call arguments:
        fields: list of `(batch, fields_i, dim_i)` tensors (may be empty).
        numeric: optional `(batch, numeric_columns)` tensor.

    Returns:
        `(batch, sum_i fields_i + numeric_columns, units)`.

    Example:

    ```python
    import numpy as np
    tokens = FieldTokens(units=16)
    tokens([np.ones((4, 3, 8)), np.ones((4, 2, 4))], np.ones((4, 5))).shape   # (4, 10, 16)
    ```
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"units: expected >= 1, got {units}")
        self.units = units
        self.projections: list[keras.layers.Dense] = []

    def build(self, fields_shape: Sequence[tuple] = (), numeric_shape: tuple | None = None) -> None:
        # One projection per embedding size; how many there are follows from the inputs.
        self.projections = [
            keras.layers.Dense(self.units, use_bias=False, name=f"projection_{i}") for i in range(len(fields_shape))
        ]
        for projection, shape in zip(self.projections, fields_shape):
            projection.build(tuple(shape))
        self.numeric_kernel = self.numeric_bias = None
        if numeric_shape is not None:
            columns = numeric_shape[-1]
            self.numeric_kernel = self.add_weight(
                name="numeric_kernel", shape=(columns, self.units), initializer="glorot_uniform"
            )
            self.numeric_bias = self.add_weight(name="numeric_bias", shape=(columns, self.units), initializer="zeros")
        super().build(fields_shape)

    def call(self, fields: Sequence[Any], numeric: Any = None) -> Any:
        tokens = [projection(group) for projection, group in zip(self.projections, fields)]
        if numeric is not None:
            tokens.append(ops.einsum("bn,nu->bnu", ops.cast(numeric, self.compute_dtype), self.numeric_kernel))
            tokens[-1] = tokens[-1] + self.numeric_bias
        return tokens[0] if len(tokens) == 1 else ops.concatenate(tokens, axis=1)

    def compute_output_shape(self, fields_shape: Sequence[tuple], numeric_shape: tuple | None = None) -> tuple:
        count = sum(shape[1] for shape in fields_shape) + (numeric_shape[-1] if numeric_shape is not None else 0)
        batch = (list(fields_shape) + [numeric_shape])[0][0]
        return (batch, count, self.units)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(units=self.units)
        return config
