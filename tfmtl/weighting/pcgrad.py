"""PCGrad: project away the conflicting part of each task's gradient (Yu et al., 2020)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfmtl.weighting.base import TaskWeighting


@keras.saving.register_keras_serializable(package="tfmtl")
class PCGrad(TaskWeighting):
    """Gradient surgery: where two tasks' gradients conflict, remove the conflicting component.

    For each task `i`, and each other task `j` in random order, if `g_i . g_j < 0`
    then `g_i <- g_i - (g_i . g_j) / |g_j|^2 g_j`; the update is the sum of the
    projected gradients (Yu et al., "Gradient Surgery for Multi-Task Learning",
    NeurIPS 2020).

    Args:
        seed: seed of the random projection order.

    Example:

    ```python
    model.compile(optimizer="adam", weighting=PCGrad())
    ```
    """

    uses_task_gradients = True

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)

    @property
    def variables(self) -> list[keras.Variable]:
        # The random state, saved with the model so that resumed training draws what it would have.
        return [self._seed_generator.state]

    def combine_gradients(self, task_gradients: Any, task_losses: Any) -> tuple[Any, Any]:
        num_tasks = len(self.tasks)
        projected = []
        for i in range(num_tasks):
            g = task_gradients[i]
            order = keras.random.shuffle(tf.range(num_tasks), seed=self._seed_generator)
            for k in range(num_tasks):
                j = order[k]
                other = tf.gather(task_gradients, j)
                dot = tf.tensordot(g, other, 1)
                conflict = tf.logical_and(dot < 0.0, tf.not_equal(j, i))
                step = dot / tf.maximum(tf.tensordot(other, other, 1), 1e-20)
                g = tf.where(conflict, g - step * other, g)
            projected.append(g)
        return tf.add_n(projected), tf.ones((num_tasks,))

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}
