"""MGDA: the minimum-norm point in the convex hull of the task gradients (Sener & Koltun, 2018)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfmtl.weighting.base import TaskWeighting


def min_norm_weights(gram: tf.Tensor, iterations: int = 50) -> tf.Tensor:
    """Simplex weights `w` minimising `|sum_t w_t g_t|^2` given the Gram matrix `G G^T`.

    Frank-Wolfe with exact line search, as in Sener & Koltun (Algorithm 2); with two
    tasks the first step is already the closed-form optimum. Tasks whose gradient is
    zero (no labels in the batch) take no part: their zero would be the min-norm point
    and stop every update.
    """
    num_tasks = gram.shape[0]
    active = tf.linalg.diag_part(gram) > 0
    active = tf.logical_or(active, tf.logical_not(tf.reduce_any(active)))  # all zero: any weights do
    if num_tasks == 2:
        # Closed form: the min-norm point of the segment between the two gradients.
        g11, g12, g22 = gram[0, 0], gram[0, 1], gram[1, 1]
        alpha = tf.clip_by_value((g22 - g12) / tf.maximum(g11 - 2 * g12 + g22, 1e-20), 0.0, 1.0)
        alpha = tf.where(active[1], tf.where(active[0], alpha, 0.0), 1.0)
        return tf.stack([alpha, 1.0 - alpha])
    active_weights = tf.cast(active, gram.dtype)
    weights = active_weights / tf.reduce_sum(active_weights)
    for _ in range(iterations):
        reach = tf.where(active, tf.linalg.matvec(gram, weights), tf.reduce_max(tf.abs(gram)) + 1.0)
        d = tf.one_hot(tf.argmin(reach), num_tasks, dtype=gram.dtype) - weights
        # Exact line search: minimise |G^T (w + gamma d)|^2 over gamma in [0, 1].
        gd = tf.linalg.matvec(gram, d)
        gamma = tf.clip_by_value(-tf.tensordot(weights, gd, 1) / tf.maximum(tf.tensordot(d, gd, 1), 1e-20), 0.0, 1.0)
        weights = weights + gamma * d
    return weights


@keras.saving.register_keras_serializable(package="tfmtl")
class MGDA(TaskWeighting):
    """Multiple-gradient descent: step along the min-norm convex combination of task gradients.

    The weights solve `min_w |sum_t w_t g_t|^2` over the simplex (Sener & Koltun,
    "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018), here on the
    gradients of all shared parameters. With `normalize="loss"` each gradient is
    divided by its task's loss first (their "loss+" variant), making the weights
    independent of the losses' scales.

    Example:

    ```python
    model.compile(optimizer="adam", weighting=MGDA())
    ```
    """

    uses_task_gradients = True

    def __init__(self, normalize: str | None = None, iterations: int = 50) -> None:
        super().__init__()
        if normalize not in (None, "loss", "l2"):
            raise ValueError(f"normalize: expected None, 'loss' or 'l2', got {normalize!r}")
        self.normalize = normalize
        self.iterations = iterations

    def combine_gradients(self, task_gradients: Any, task_losses: Any) -> tuple[Any, Any]:
        gradients = task_gradients
        if self.normalize == "loss":
            gradients = gradients / tf.maximum(tf.stop_gradient(task_losses), 1e-12)[:, None]
        elif self.normalize == "l2":
            gradients = tf.math.l2_normalize(gradients, axis=1)
        weights = min_norm_weights(tf.matmul(gradients, gradients, transpose_b=True), self.iterations)
        return tf.linalg.matvec(gradients, weights, transpose_a=True), weights

    def get_config(self) -> dict[str, Any]:
        return {"normalize": self.normalize, "iterations": self.iterations}
