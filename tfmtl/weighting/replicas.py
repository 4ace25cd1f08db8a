"""Helpers that make per-task losses and gradients global under tf.distribute."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import tensorflow as tf


def num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def sum_over_replicas(value: Any) -> Any:
    """Sums `value` over the replicas of the current strategy (identity on one device)."""
    if num_replicas() == 1:
        return value
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


def with_global_value(local_share: Any) -> Any:
    """The global sum's value, differentiable through this replica's share only.

    Each replica's share of a loss sums to the global loss; summing the gradients of
    `f(with_global_value(share))` over replicas (as the optimizer does) gives the
    gradient of `f(global loss)` for any `f`, linear or not.
    """
    if num_replicas() == 1:
        return local_share
    return local_share + tf.stop_gradient(sum_over_replicas(local_share) - local_share)


def flatten(gradients: Sequence[Any], variables: Sequence[Any]) -> tf.Tensor:
    """Concatenates the gradients of `variables` into one vector (None and sparse made dense)."""
    parts = [
        tf.reshape(tf.convert_to_tensor(g) if g is not None else tf.zeros(v.shape, v.dtype), [-1])
        for g, v in zip(gradients, variables)
    ]
    return tf.concat(parts, axis=0)


def unflatten(vector: tf.Tensor, variables: Sequence[Any]) -> list[tf.Tensor]:
    """Splits a vector made by `flatten` back into one tensor per variable."""
    sizes = [math.prod(v.shape) for v in variables]
    return [tf.reshape(part, v.shape) for part, v in zip(tf.split(vector, sizes), variables)]
