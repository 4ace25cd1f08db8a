"""FAMO: fast adaptive multitask optimization (Liu et al., 2023)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from tfmtl.weighting import replicas
from tfmtl.weighting.base import TaskWeighting

EPSILON = 1e-8


@keras.saving.register_keras_serializable(package="tfmtl")
class FAMO(TaskWeighting):
    """Weights the log task losses so that all tasks' losses fall at the same rate.

    The network minimises `sum_t z_t log L_t / c` with task weights `z = softmax(xi)`
    and `c = sum_t z_t / L_t`, so task `t`'s gradient enters with weight
    `z_t / (c L_t)` (these sum to 1). After each step the logits `xi` take one Adam
    step (learning rate `learning_rate`) along `J^T delta + decay xi`, where
    `delta_t = log L_t(previous step) - log L_t(this step)` is how much task `t`'s
    loss fell and `J` the softmax's Jacobian: the task whose loss falls slower gets
    more weight (Liu, Liu, Jin, Stone and Liu, "FAMO: Fast Adaptive Multitask
    Optimization", NeurIPS 2023, with the authors' defaults). No per-task gradient is
    needed. The authors' trainers measure `delta` on one batch, evaluating it again
    after the step; here consecutive steps' losses (of different batches) give it,
    which saves that forward pass at the cost of batch noise in `delta`. A task
    without labels in a batch is left out of that step's weights and update.

    The logits and the previous losses are `keras.Variable`s saved with the model;
    the logits have their own Adam optimizer (their learning rate is not the
    model's), whose state is saved too. The logged `<task>_weight` is `z`.

    Args:
        learning_rate: Adam learning rate of the logits.
        decay: L2 regularisation of the logits, pulling the weights towards equal.

    Example:

    ```python
    model.compile(optimizer="adam", weighting=FAMO(learning_rate=0.025, decay=0.01))
    ```
    """

    def __init__(self, learning_rate: float = 0.025, decay: float = 0.01) -> None:
        super().__init__()
        if learning_rate <= 0 or decay < 0:
            raise ValueError(f"learning_rate: expected > 0 and decay >= 0, got {learning_rate} and {decay}")
        self.learning_rate = learning_rate
        self.decay = decay

    def build(self, tasks: Sequence) -> None:
        super().build(tasks)
        num_tasks = len(tasks)
        # Not trainable: the model's optimizer must leave the logits to their own.
        self.logits = keras.Variable(ops.zeros((num_tasks,)), name="famo_logits", dtype="float32", trainable=False)
        self.previous_losses = keras.Variable(
            ops.zeros((num_tasks,)), name="famo_previous_losses", dtype="float32", trainable=False,
            aggregation="only_first_replica",
        )  # fmt: skip
        self.optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate, name="famo_adam")
        self.optimizer.build([self.logits])

    @property
    def variables(self) -> list[keras.Variable]:
        return [self.logits, self.previous_losses, *self.optimizer.variables] if self.built else []

    def task_weights(self) -> Any:
        return ops.softmax(self.logits)

    def combine(self, task_losses: Any) -> Any:
        labelled = ops.cast(task_losses > 0, "float32")
        shifted = task_losses + EPSILON
        weights = self.task_weights() * labelled
        normalizer = ops.stop_gradient(ops.sum(weights / shifted))
        return ops.sum(weights * ops.log(shifted)) / normalizer

    def update(self, task_losses: Any, task_gradients: Any) -> None:
        losses = tf.stop_gradient(task_losses)
        both = tf.logical_and(losses > 0, self.previous_losses > 0)
        fall = tf.where(both, tf.math.log(self.previous_losses + EPSILON) - tf.math.log(losses + EPSILON), 0.0)
        with tf.GradientTape() as tape:
            tape.watch(self.logits.value)
            weights = tf.nn.softmax(self.logits.value)
        gradient = tape.gradient(weights, self.logits.value, output_gradients=fall) + self.decay * self.logits.value
        # The first step has no previous losses: no move (the decay term is zero at xi = 0).
        gradient = tf.where(tf.reduce_any(both), gradient, tf.zeros_like(gradient))
        # The gradient is the same on every replica, and the optimizer sums over replicas.
        self.optimizer.apply([gradient / replicas.num_replicas()], [self.logits])
        # A step with nothing to measure moved nothing (Adam's moments stay 0): it does not count as one of
        # Adam's steps, whose bias correction would otherwise shrink the first real move by a quarter.
        # (No tf.cond around `apply`: under tf.distribute it synchronises replicas, which a branch may not.)
        iterations = self.optimizer.iterations
        iterations.assign(tf.where(tf.reduce_any(both), iterations, iterations - 1))
        self.previous_losses.assign(tf.where(losses > 0, losses, self.previous_losses))

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "decay": self.decay}
