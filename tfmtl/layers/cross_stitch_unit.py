"""CrossStitchUnit: learned linear mixing of per-task columns (Misra et al., CVPR 2016)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="tfmtl")
class CrossStitchUnit(keras.layers.Layer):
    """Replaces each task's activations with a learned mix of all tasks' activations.

    Column `t` continues with `sum_s alpha[t, s] * x_s`; `alpha` starts at
    `self_weight` on the diagonal and shares the rest evenly, the initialisation
    Misra et al. recommend ("Cross-stitch Networks for Multi-task Learning",
    CVPR 2016), and is learned with the columns.

    Args:
        num_tasks: how many columns.
        self_weight: initial weight of a column on itself.

    Call arguments:
        inputs: `(batch, num_tasks, units)`, one activation per column.

    Returns:
        `(batch, num_tasks, units)`.

    Example:

    ```python
    import numpy as np
    stitch = CrossStitchUnit(num_tasks=2)
    stitch(np.ones((4, 2, 8))).shape   # (4, 2, 8)
    ```
    """

    def __init__(self, num_tasks: int, self_weight: float = 0.9, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_tasks < 1:
            raise ValueError(f"num_tasks: expected >= 1, got {num_tasks}")
        self.num_tasks = num_tasks
        self.self_weight = self_weight

    def build(self, input_shape: tuple) -> None:
        others = (1.0 - self.self_weight) / max(self.num_tasks - 1, 1)
        start = np.full((self.num_tasks, self.num_tasks), others, "float32")
        np.fill_diagonal(start, self.self_weight if self.num_tasks > 1 else 1.0)
        self.alpha = self.add_weight(
            name="alpha", shape=(self.num_tasks, self.num_tasks), initializer=keras.initializers.Constant(start)
        )
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        return ops.einsum("ts,bsu->btu", self.alpha, inputs)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_tasks=self.num_tasks, self_weight=self.self_weight)
        return config
