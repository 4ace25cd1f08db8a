"""DWA: dynamic weight average over epochs (Liu, Johns and Davison, 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.weighting.base import TaskWeighting


@keras.saving.register_keras_serializable(package="tfmtl")
class DynamicWeightAverage(TaskWeighting):
    """Gives more weight to the tasks whose average loss fell least over the last epoch.

    With `L_t(e)` the average training loss of task `t` in epoch `e`, the weights of
    epoch `e` are `w_t = K softmax_t(r_t / T)` with `r_t = L_t(e-1) / L_t(e-2)`, `K`
    tasks and temperature `T` (Liu, Johns and Davison, "End-to-End Multi-Task
    Learning with Attention", CVPR 2019). They sum to `K`; the first two epochs, and
    any epoch after one in which a task had no labels, use weights of 1.

    The state is the last two epochs' average losses, in a `keras.Variable` saved
    with the model, so resuming training (or calling `fit` again) continues the
    history. It is updated by a callback that `MultiTaskModel.fit` adds: only `fit`
    knows where an epoch ends, and the averages are the epoch's `<task>_loss` logs
    the model already keeps, global under `tf.distribute`. Counting steps inside the
    training step instead would need the number of steps per epoch up front and a
    second running average beside the logged one.

    Args:
        temperature: `T`; larger values make the weights more even (the paper's 2).

    Example:

    ```python
    model.compile(optimizer="adam", weighting=DynamicWeightAverage(temperature=2.0))
    model.fit(data, epochs=5)   # weights move from the third epoch on
    ```
    """

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature: expected > 0, got {temperature}")
        self.temperature = temperature

    def build(self, tasks: Sequence) -> None:
        super().build(tasks)
        # Row 0: the average losses of the epoch before last; row 1: of the last epoch (0 = not seen).
        self.epoch_losses = keras.Variable(
            ops.zeros((2, len(tasks))), name="dwa_epoch_losses", dtype="float32", trainable=False
        )

    @property
    def variables(self) -> list[keras.Variable]:
        return [self.epoch_losses] if self.built else []

    def task_weights(self) -> Any:
        before, last = self.epoch_losses[0], self.epoch_losses[1]
        known = ops.all(before > 0) & ops.all(last > 0)  # an epoch with no labels of a task gives no ratio
        ratios = last / ops.where(before > 0, before, 1.0)
        weights = len(self.tasks) * ops.softmax(ratios / self.temperature)
        return ops.where(known, weights, ops.ones_like(weights))

    def combine(self, task_losses: Any) -> Any:
        return ops.sum(self.task_weights() * task_losses)

    def end_epoch(self, logs: dict[str, float]) -> None:
        """Records an epoch's average task losses, read from the `fit` logs `<task>_loss`."""
        losses = [float(logs[f"{task.name}_loss"]) for task in self.tasks]
        self.epoch_losses.assign(ops.stack([self.epoch_losses[1], ops.convert_to_tensor(losses, "float32")]))

    def callbacks(self) -> list[keras.callbacks.Callback]:
        return [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: self.end_epoch(logs))]

    def get_config(self) -> dict[str, Any]:
        return {"temperature": self.temperature}
