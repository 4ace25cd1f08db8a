"""Exact minimisation over simplex weights by enumerating their supports (MGDA, CAGrad)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Up to this many tasks the solvers enumerate every support of the weights (2^tasks - 1 small
# linear systems in one batch); beyond, they iterate.
EXACT_MAX_TASKS = 10


def support_masks(num_tasks: int) -> np.ndarray:
    """Every non-empty subset of the tasks as a 0/1 row, `(2^num_tasks - 1, num_tasks)`.

    Example:

    ```python
    support_masks(2)   # [[1, 0], [0, 1], [1, 1]]
    ```
    """
    return np.array([[(s >> t) & 1 for t in range(num_tasks)] for s in range(1, 2**num_tasks)], np.float64)


def best_feasible(candidates: tf.Tensor, objective: tf.Tensor, feasible: tf.Tensor, fallback: tf.Tensor) -> tf.Tensor:
    """The feasible candidate weights `(supports, tasks)` of lowest `objective`, clipped to the simplex.

    `fallback` (in the output dtype) where no candidate is feasible.

    Example:

    ```python
    best_feasible(tf.constant([[1.0, 0.0], [0.5, 0.5]], tf.float64), tf.constant([2.0, 1.0], tf.float64),
                  tf.constant([True, True]), tf.constant([0.5, 0.5]))   # [0.5, 0.5]
    ```
    """
    best = tf.argmin(tf.where(feasible, objective, np.inf))
    weights = tf.maximum(tf.gather(candidates, best), 0.0)
    weights = tf.cast(weights / tf.reduce_sum(weights), fallback.dtype)
    return tf.where(tf.reduce_any(feasible), weights, fallback)
