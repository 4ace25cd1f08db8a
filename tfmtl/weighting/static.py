"""StaticWeighting: fixed per-task loss weights, as Keras `loss_weights`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.errors import InputError
from tfmtl.weighting.base import TaskWeighting


@keras.saving.register_keras_serializable(package="tfmtl")
class StaticWeighting(TaskWeighting):
    """Weights each task's loss by a fixed number: `loss = sum_t w_t * loss_t`.

    Args:
        weights: task name to weight; tasks not named use their `Task.loss_weight`
            (1 by default).

    Example:

    ```python
    model.compile(optimizer="adam", weighting=StaticWeighting({"income": 2.0}))
    ```
    """

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.weights = dict(weights or {})

    def build(self, tasks: Sequence) -> None:
        unknown = sorted(set(self.weights) - {t.name for t in tasks})
        if unknown:
            raise InputError(f"weighting weights: unknown task(s) {unknown}")
        super().build(tasks)
        self._weights = ops.convert_to_tensor(
            [float(self.weights.get(t.name, t.loss_weight)) for t in tasks], dtype="float32"
        )

    def task_weights(self) -> Any:
        return self._weights

    def combine(self, task_losses: Any) -> Any:
        return ops.sum(self._weights * task_losses)

    def get_config(self) -> dict[str, Any]:
        return {"weights": self.weights}
