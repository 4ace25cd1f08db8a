"""CAGrad: conflict-averse gradient descent (Liu et al., 2021)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfmtl.weighting.base import TaskWeighting
from tfmtl.weighting.simplex import EXACT_MAX_TASKS, best_feasible, support_masks


@keras.saving.register_keras_serializable(package="tfmtl")
class CAGrad(TaskWeighting):
    """Moves along the average gradient, bent towards the worst-off task within a ball.

    With `g0` the average task gradient, the update `d` maximises the smallest task
    improvement `min_i g_i . d` subject to `|d - g0| <= c |g0|` (Liu et al.,
    "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021). The
    dual over simplex weights `w` is solved exactly for up to 10 tasks (every support's
    stationary point in one batch), beyond by `steps` momentum steps as in the
    authors' code; `d = g0 + c |g0| g_w / |g_w|`, divided by `1 + c^2`. With `c = 0`
    it is the average gradient.

    Args:
        c: radius of the ball, relative to `|g0|` (the paper's default 0.5).
        steps: inner optimisation steps, for more than 10 tasks.

    Example:

    ```python
    model.compile(optimizer="adam", weighting=CAGrad(c=0.5))
    ```
    """

    uses_task_gradients = True

    def __init__(self, c: float = 0.5, steps: int = 20) -> None:
        super().__init__()
        if c < 0:
            raise ValueError(f"c: expected >= 0, got {c}")
        self.c = c
        self.steps = steps

    def combine_gradients(self, task_gradients: Any, task_losses: Any) -> tuple[Any, Any]:
        num_tasks = len(self.tasks)
        gram = tf.matmul(task_gradients, task_gradients, transpose_b=True)
        # In units of the mean gradient norm: the solution does not depend on the gradients' scale
        # (loss scaling under mixed precision multiplies them by thousands).
        gram = gram / (tf.reduce_mean(tf.sqrt(tf.linalg.diag_part(gram))) ** 2 + 1e-20)
        mean = tf.fill([num_tasks], 1.0 / num_tasks)
        radius = self.c * tf.sqrt(tf.reduce_mean(gram)) + 1e-8  # c |g0|, since |g0|^2 = mean(G G^T)
        if num_tasks <= EXACT_MAX_TASKS:
            w = _exact_dual_weights(gram, radius)
        else:
            w = self._iterated_dual_weights(gram, radius, mean)
        norm_w = tf.sqrt(tf.tensordot(w, tf.linalg.matvec(gram, w), 1) + 1e-8)
        weights = (mean + radius / (norm_w + 1e-8) * w) / (1.0 + self.c**2)
        return tf.linalg.matvec(task_gradients, weights, transpose_a=True), weights

    def _iterated_dual_weights(self, gram: tf.Tensor, radius: tf.Tensor, mean: tf.Tensor) -> tf.Tensor:
        """The dual's weights by `steps` momentum steps on softmax logits, as in the authors' code."""
        gram_mean = tf.linalg.matvec(gram, mean)

        def objective(logits: tf.Tensor) -> tf.Tensor:
            w = tf.nn.softmax(logits)
            spread = tf.sqrt(tf.tensordot(w, tf.linalg.matvec(gram, w), 1) + 1e-8)
            return tf.tensordot(w, gram_mean, 1) + radius * spread

        logits = tf.zeros_like(mean)
        velocity = tf.zeros_like(mean)
        for _ in range(self.steps):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                value = objective(logits)
            velocity = 0.5 * velocity + tape.gradient(value, logits)
            logits = logits - 5.0 * velocity
        return tf.nn.softmax(logits)

    def get_config(self) -> dict[str, Any]:
        return {"c": self.c, "steps": self.steps}


def _exact_dual_weights(gram: tf.Tensor, radius: tf.Tensor) -> tf.Tensor:
    """The simplex weights minimising CAGrad's dual `w.G m + radius sqrt(w.G w)` (`m`: the mean weights).

    On a support `S` the stationary point solves `G_S w = a (lambda 1 - b)` with
    `b = (G m)_S` and `a = |g_w| / radius`; with `u = G_S^+ 1`, `v = G_S^+ b`,
    `U = sum(u)`, `V = sum(v)`, `W = b.v`, the constraints `sum(w) = 1` and
    `|g_w| = a radius` give `w = (lambda u - v) / sqrt(D)`, `D = V^2 - U (W - radius^2)`,
    `lambda = (V + sqrt(D)) / U`. The best feasible support is the optimum.
    """
    num_tasks = gram.shape[0]
    masks = tf.constant(support_masks(num_tasks))  # (supports, tasks)
    g = tf.cast(gram, tf.float64)
    r = tf.cast(radius, tf.float64)
    mean = tf.fill([num_tasks], tf.constant(1.0 / num_tasks, tf.float64))
    b = tf.linalg.matvec(g, mean) * masks  # (supports, tasks)
    # G restricted to each support, the identity elsewhere; its pseudo-inverse keeps u, v at 0 off the support.
    restricted = g * masks[:, :, None] * masks[:, None, :] + tf.linalg.diag(1.0 - masks)
    inverse = tf.linalg.pinv(restricted, rcond=1e-10)
    u = tf.linalg.matvec(inverse, masks) * masks
    v = tf.linalg.matvec(inverse, b) * masks
    big_u, big_v, big_w = tf.reduce_sum(u, 1), tf.reduce_sum(v, 1), tf.reduce_sum(b * v, 1)
    discriminant = big_v**2 - big_u * (big_w - r**2)
    root = tf.sqrt(tf.maximum(discriminant, 1e-300))
    lam = (big_v + root) / tf.where(tf.abs(big_u) > 1e-12, big_u, 1.0)
    weights = (lam[:, None] * u - v) / root[:, None]
    spread = tf.sqrt(tf.maximum(tf.einsum("kt,ts,ks->k", weights, g, weights), 0.0))
    objective = tf.reduce_sum(weights * b, 1) + r * spread
    feasible = (
        (discriminant > 1e-12)
        & (big_u > 1e-12)
        & tf.reduce_all(weights >= -1e-9, axis=1)
        & (tf.abs(tf.reduce_sum(weights, 1) - 1.0) < 1e-6)
    )
    # No feasible stationary point (degenerate gradients): the average gradient's weights.
    return best_feasible(weights, objective, feasible, tf.fill([num_tasks], tf.constant(1.0 / num_tasks, gram.dtype)))
