"""GradNorm: learned task weights that balance the tasks' gradient norms (Chen et al., 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from tfmtl.weighting.base import TaskWeighting


@keras.saving.register_keras_serializable(package="tfmtl")
class GradNorm(TaskWeighting):
    """Learns task weights so that each weighted task loss trains the shared layers at its fair rate.

    The network minimises `sum_t w_t L_t`. The weights `w` are trained by the
    model's optimizer on `L_grad = sum_t |G_t - mean(G) r_t^alpha|`, where
    `G_t = w_t |grad L_t|` is the norm of task `t`'s weighted gradient of the shared
    parameters and `r_t = (L_t / L_t(0)) / mean_s(L_s / L_s(0))` its relative inverse
    training rate (the target `mean(G) r_t^alpha` is held constant); after each
    update they are renormalised to sum to the number of tasks (Chen, Badrinarayanan,
    Lee and Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss Balancing
    in Deep Multitask Networks", ICML 2018). A task that trains slower than the others
    (larger `r_t`) gets a larger weight; `alpha` sets how strongly.

    The paper takes the gradients of the last shared layer only, to save compute;
    here they are those of all shared parameters (as LibMTL does), which every zoo
    model defines, at the cost of one backward pass per task, as for gradient-level
    strategies. `L_t(0)` is each task's loss in the first step in which it had labels.

    Args:
        alpha: asymmetry; 0 equalises the gradient norms, larger values pull harder
            towards equal training rates (the paper's default 1.5).

    Example:

    ```python
    model.compile(optimizer=keras.optimizers.Adam(1e-3), weighting=GradNorm(alpha=1.5))
    ```
    """

    reads_task_gradients = True

    def __init__(self, alpha: float = 1.5) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha: expected >= 0, got {alpha}")
        self.alpha = alpha

    def build(self, tasks: Sequence) -> None:
        super().build(tasks)
        num_tasks = len(tasks)
        # Both are assigned inside the (replicated) training step with values equal on every replica.
        self.loss_weights = keras.Variable(
            ops.ones((num_tasks,)), name="gradnorm_weights", dtype="float32", aggregation="only_first_replica"
        )
        self.initial_losses = keras.Variable(
            ops.zeros((num_tasks,)), name="gradnorm_initial_losses", dtype="float32", trainable=False,
            aggregation="only_first_replica",
        )  # fmt: skip

    @property
    def variables(self) -> list[keras.Variable]:
        return [self.loss_weights, self.initial_losses] if self.built else []

    def task_weights(self) -> Any:
        return ops.convert_to_tensor(self.loss_weights)

    def combine(self, task_losses: Any) -> Any:
        # The weights get their own gradient (own_gradients), not this loss's.
        return ops.sum(ops.stop_gradient(self.task_weights()) * task_losses)

    def own_gradients(self, task_losses: Any, task_gradients: Any) -> list:
        gradient_norms = tf.stop_gradient(tf.norm(task_gradients, axis=1))
        initial = self._initial(task_losses)
        loss_ratios = tf.stop_gradient(tf.math.divide_no_nan(task_losses, initial))
        inverse_rates = tf.math.divide_no_nan(loss_ratios, tf.reduce_mean(loss_ratios))
        with tf.GradientTape() as tape:
            weighted_norms = self.loss_weights * gradient_norms
            targets = tf.stop_gradient(tf.reduce_mean(weighted_norms) * inverse_rates**self.alpha)
            balance_loss = tf.reduce_sum(tf.abs(weighted_norms - targets))
        return [tape.gradient(balance_loss, self.loss_weights.value)]

    def update(self, task_losses: Any, task_gradients: Any) -> None:
        self.initial_losses.assign(self._initial(task_losses))
        # A weight pushed to zero or below would turn its task's descent into ascent: keep it positive.
        positive = ops.maximum(self.loss_weights, 1e-3)
        self.loss_weights.assign(len(self.tasks) * positive / ops.sum(positive))

    def _initial(self, task_losses: Any) -> Any:
        """`L_t(0)`, taking this step's loss for tasks not yet seen with labels."""
        return ops.where(self.initial_losses > 0, self.initial_losses, ops.stop_gradient(task_losses))

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}
