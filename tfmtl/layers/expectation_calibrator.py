"""ExpectationCalibrator: a later funnel step should not be likelier than the one before (AITM)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfmtl")
class ExpectationCalibrator(keras.layers.Layer):
    """Adds, while training, a loss on predictions that break the funnel's order.

    The behavioural expectation calibrator of Xi et al. (AITM, KDD 2021): a user
    cannot convert without clicking, so `p(conversion) <= p(click)`. For each link
    `(parent, child)` of entire-space logits it adds
    `weight * mean(max(sigmoid(z_child) - sigmoid(z_parent), 0))` with `add_loss`;
    the inputs pass through unchanged.

    Args:
        links: `(parent, child)` task indices.
        weight: the loss weight (0: no loss).

    Call arguments:
        inputs: entire-space logits `(batch, num_tasks)`.

    Returns:
        The inputs.

    Example:

    ```python
    import numpy as np
    calibrator = ExpectationCalibrator(links=[(0, 1)], weight=0.5)
    calibrator(np.array([[-2.0, 1.0]]), training=True)
    calibrator.losses   # [0.5 * (sigmoid(1) - sigmoid(-2))]
    ```
    """

    def __init__(self, links: Sequence[Sequence[int]], weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if weight < 0:
            raise ValueError(f"weight: expected >= 0, got {weight}")
        self.links = [[int(parent), int(child)] for parent, child in links]
        self.weight = weight

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if training and self.weight and self.links:
            # In float32 under mixed precision: Keras adds auxiliary losses to the float32 loss.
            probabilities = ops.sigmoid(ops.cast(inputs, "float32"))
            parents = ops.take(probabilities, [parent for parent, _ in self.links], axis=1)
            children = ops.take(probabilities, [child for _, child in self.links], axis=1)
            excess = ops.mean(ops.relu(children - parents), axis=0)
            self.add_loss(self.weight * ops.sum(excess))
        return inputs

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(links=self.links, weight=self.weight)
        return config
