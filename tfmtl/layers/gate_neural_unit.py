"""GateNeuralUnit: a small network whose output scales another layer's units, PEPNet's Gate NU."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="tfmtl")
class GateNeuralUnit(keras.layers.Layer):
    """Maps a prior (domain, user, item embeddings) to per-unit scales in `(0, scale)`.

    `scale * sigmoid(Dense(units) -> relu -> Dense(output_dim))`, the Gate NU of
    Chang et al., "PEPNet: Parameter and Embedding Personalized Network for
    Infusing with Personalized Prior Information" (KDD 2023). Multiplying a layer's
    input by it personalises that layer; with `scale = 2` an untrained gate (sigmoid
    near 0.5) leaves the layer about as it is.

    Args:
        units: hidden size.
        output_dim: how many scales (the width of what they multiply).
        scale: the largest scale, `gamma` in the paper.

    Example:

    ```python
    import numpy as np
    gate = GateNeuralUnit(units=16, output_dim=32)
    gate(np.ones((8, 5))).shape   # (8, 32), values in (0, 2)
    ```
    """

    def __init__(self, units: int, output_dim: int, scale: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if units < 1 or output_dim < 1:
            raise ValueError(f"units, output_dim: expected positive sizes, got {units}, {output_dim}")
        if scale <= 0:
            raise ValueError(f"scale: expected > 0, got {scale}")
        self.units = int(units)
        self.output_dim = int(output_dim)
        self.scale = float(scale)
        self.hidden = keras.layers.Dense(self.units, activation="relu", name="hidden")
        self.gate = keras.layers.Dense(self.output_dim, activation="sigmoid", name="gate")

    def build(self, input_shape: tuple) -> None:
        self.hidden.build(input_shape)
        self.gate.build((*input_shape[:-1], self.units))
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        return self.scale * self.gate(self.hidden(inputs))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.output_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(units=self.units, output_dim=self.output_dim, scale=self.scale)
        return config
