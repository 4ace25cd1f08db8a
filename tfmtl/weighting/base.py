"""TaskWeighting: the pluggable rule that turns per-task losses into one update."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf


class TaskWeighting:
    """Base class of task-weighting strategies, passed as `model.compile(weighting=...)`.

    A strategy sees the vector of per-task losses of a step. Loss-level strategies
    override `combine` (a scalar loss to differentiate); gradient-level strategies
    override `gradients`, which by default differentiates `combine`'s result. The
    model keeps architecture and weighting apart: any model works with any strategy.

    Strategies with state (`keras.Variable`s created in `build`) are trained with the
    model's optimizer when the variables are trainable, and saved with the model.

    Example:

    ```python
    class Sum(TaskWeighting):
        def combine(self, task_losses):
            return keras.ops.sum(task_losses)
    ```
    """

    def __init__(self) -> None:
        self.tasks: list = []
        self.built = False

    def build(self, tasks: Sequence) -> None:
        """Creates any state; called by `compile` with the model's tasks."""
        self.tasks = list(tasks)
        self.built = True

    @property
    def variables(self) -> list[keras.Variable]:
        return []

    @property
    def trainable_variables(self) -> list[keras.Variable]:
        return [v for v in self.variables if v.trainable]

    def task_weights(self) -> Any:
        """The current weight of each task's loss, shape `(num_tasks,)`, for logging."""
        return keras.ops.ones((len(self.tasks),))

    def combine(self, task_losses: Any) -> Any:
        """Returns the scalar loss for per-task losses of shape `(num_tasks,)`."""
        raise NotImplementedError(f"{type(self).__name__} must implement combine()")

    def gradients(self, tape: tf.GradientTape, loss: Any, task_losses: Any, variables: Sequence) -> list:
        """Returns the gradient of each variable; `loss` is `combine`'s result, scaled for the replicas."""
        return tape.gradient(loss, list(variables))

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TaskWeighting":
        return cls(**config)
