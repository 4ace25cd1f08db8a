"""Aligned-MTL: align task gradients by a condition-number-one transform (Senushkin et al., 2023)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfmtl.weighting.base import TaskWeighting


@keras.saving.register_keras_serializable(package="tfmtl")
class AlignedMTL(TaskWeighting):
    """Rescales the task gradients' principal directions so the system is well conditioned.

    With the Gram matrix `G G^T = V diag(lambda) V^T`, the aligned gradients are
    `B G` with `B = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T` (over the non-zero
    eigenvalues), and the update is their sum (Senushkin et al., "Independent
    Component Alignment for Multi-Task Learning", CVPR 2023). Orthogonal gradients
    are each rescaled to the smallest one's norm.

    Example:

    ```python
    model.compile(optimizer="adam", weighting=AlignedMTL())
    ```
    """

    uses_task_gradients = True

    def combine_gradients(self, task_gradients: Any, task_losses: Any) -> tuple[Any, Any]:
        gram = tf.matmul(task_gradients, task_gradients, transpose_b=True)
        eigenvalues, eigenvectors = tf.linalg.eigh(tf.cast(gram, tf.float64))
        # The Gram matrix carries the gradients' rounding: smaller eigenvalues are noise of that size.
        tolerance = tf.reduce_max(eigenvalues) * gram.shape[0] * np.finfo(task_gradients.dtype.as_numpy_dtype).eps
        kept = eigenvalues > tolerance
        smallest = tf.reduce_min(tf.where(kept, eigenvalues, tf.reduce_max(eigenvalues)))
        inverse_sqrt = tf.where(kept, tf.math.rsqrt(tf.where(kept, eigenvalues, 1.0)), 0.0)
        balance = tf.sqrt(smallest) * tf.matmul(eigenvectors * inverse_sqrt, eigenvectors, transpose_b=True)
        weights = tf.cast(tf.reduce_sum(balance, axis=0), task_gradients.dtype)
        return tf.linalg.matvec(task_gradients, weights, transpose_a=True), weights
