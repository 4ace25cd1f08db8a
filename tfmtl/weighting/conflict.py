"""Gradient conflict: how far apart the tasks' gradients on the shared parameters point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf


def cosine_similarities(task_gradients: tf.Tensor) -> tf.Tensor:
    """Cosine similarity of every pair of rows of `(num_tasks, n)` gradients, as a matrix."""
    normalized = tf.math.l2_normalize(task_gradients, axis=1)
    return tf.matmul(normalized, normalized, transpose_b=True)


def gradient_cosines(tasks: Sequence[Any], task_gradients: tf.Tensor) -> dict[str, tf.Tensor]:
    """Log entries `cos_<a>_<b>` for each pair of tasks, from their shared-parameter gradients."""
    matrix = cosine_similarities(task_gradients)
    return {
        f"cos_{a.name}_{b.name}": matrix[i, j]
        for i, a in enumerate(tasks)
        for j, b in enumerate(tasks)
        if i < j
    }
