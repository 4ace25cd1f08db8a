"""TaskWeighting: the pluggable rule that turns per-task losses into one update."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops


class TaskWeighting:
    """Base class of task-weighting strategies, passed as `model.compile(weighting=...)`.

    Loss-level strategies override `combine`: a scalar loss from the vector of
    per-task losses, differentiated as usual. Gradient-level strategies set
    `uses_task_gradients = True` and override `combine_gradients`: they receive each
    task's gradient of the shared parameters, flattened into one row per task, and
    return the one gradient to apply. Task-specific parameters always get their own
    task's plain gradient. The model keeps architecture and weighting apart: any
    model works with any strategy, and under `tf.distribute` both methods see
    global values (losses and gradients summed over replicas), so every strategy
    gives the result of single-device training on the global batch.

    Strategies with state create `keras.Variable`s in `build` and list them in
    `variables`; they are saved with the model. Trainable ones are trained by the
    model's optimizer, on the gradient of the combined loss unless `own_gradients`
    supplies another (GradNorm's). `update` runs once per training step after the
    optimizer's update, for state that follows the step (FAMO's task logits); a
    strategy with epoch-level state supplies `callbacks` (DWA's), which `fit` adds.
    Loss-level strategies that read the per-task gradients set
    `reads_task_gradients = True`.

    Example:

    ```python
    class Sum(TaskWeighting):
        def combine(self, task_losses):
            return keras.ops.sum(task_losses)
    ```
    """

    uses_task_gradients: bool = False
    reads_task_gradients: bool = False

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
        """The current weight of each task's loss, shape `(num_tasks,)`, for the logs."""
        return ops.ones((len(self.tasks),))

    def combine(self, task_losses: Any) -> Any:
        """Returns the scalar loss to differentiate, from per-task losses of shape `(num_tasks,)`.

        Gradient-level strategies use it for the reported loss only (default: the sum).
        """
        if self.uses_task_gradients:
            return ops.sum(task_losses)
        raise NotImplementedError(f"{type(self).__name__} must implement combine()")

    def combine_gradients(self, task_gradients: Any, task_losses: Any) -> tuple[Any, Any]:
        """Returns `(gradient, task_weights)` from per-task gradients of shape `(num_tasks, n)`.

        `gradient` has shape `(n,)`; `task_weights` (shape `(num_tasks,)`) are the
        effective weights of the combination, for the logs.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement combine_gradients()")

    def own_gradients(self, task_losses: Any, task_gradients: Any) -> list | None:
        """Gradients of `trainable_variables`, or None for those of the combined loss.

        `task_gradients` are as in `combine_gradients` when the strategy uses or reads
        them, else None. Under `tf.distribute` the returned gradients must be global
        (the same on every replica), as those of global values are.
        """
        return None

    def update(self, task_losses: Any, task_gradients: Any) -> None:
        """Updates state after the optimizer's update, inside the (traced) training step.

        Runs in replica context under `tf.distribute`: assign values that are the
        same on every replica, to variables with `aggregation="only_first_replica"`.
        """

    def callbacks(self) -> list[keras.callbacks.Callback]:
        """Keras callbacks that `MultiTaskModel.fit` adds, for state that changes per epoch."""
        return []

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TaskWeighting":
        return cls(**config)
