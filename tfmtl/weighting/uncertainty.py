"""UncertaintyWeighting: learned homoscedastic-uncertainty weights (Kendall et al., 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.weighting.base import TaskWeighting


@keras.saving.register_keras_serializable(package="tfmtl")
class UncertaintyWeighting(TaskWeighting):
    """Learns a noise scale per task and weights its loss by the inverse variance.

    With `s_t = log sigma_t^2` learned jointly with the model, the loss is
    `sum_t c_t exp(-s_t) loss_t + s_t / 2`, where `c_t` is 1/2 for regression
    (Gaussian likelihood) and 1 for classification tasks, following Kendall, Gal and
    Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses", CVPR 2018.

    Example:

    ```python
    model.compile(optimizer="adam", weighting=UncertaintyWeighting())
    ```
    """

    def build(self, tasks: Sequence) -> None:
        super().build(tasks)
        self.log_variance = keras.Variable(
            ops.zeros((len(tasks),)), name="uncertainty_log_variance", dtype="float32"
        )
        self._scale = ops.convert_to_tensor(
            [0.5 if t.kind == "regression" else 1.0 for t in tasks], dtype="float32"
        )

    @property
    def variables(self) -> list[keras.Variable]:
        return [self.log_variance] if self.built else []

    def task_weights(self) -> Any:
        return self._scale * ops.exp(-self.log_variance)

    def combine(self, task_losses: Any) -> Any:
        return ops.sum(self.task_weights() * task_losses + 0.5 * self.log_variance)
