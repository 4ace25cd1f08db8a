"""AdaptiveInformationTransfer: a parent task's tower feeds its child's by attention (AITM)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.layers.parallel_dense import ParallelDense


@keras.saving.register_keras_serializable(package="tfmtl")
class AdaptiveInformationTransfer(keras.layers.Layer):
    """Passes each funnel step's tower representation on to the next step's tower.

    The adaptive information transfer (AIT) module of Xi et al., "Modeling the
    Sequential Dependence among Audience Multi-step Conversions with Multi-task
    Learning in Targeted Display Advertising", KDD 2021. For each link
    `(parent, child)`, a transfer unit (dense + ReLU) maps the parent's output
    `z_parent` to `p`, and the child's output is attention over `u in {q, p}`, `q`
    being the child's own tower representation: weights
    `softmax_u(<h1(u), h2(u)> / sqrt(dim))` and `z_child = sum_u w_u h3(u)`, with
    linear `h1, h2, h3`. Tasks that no link leads to keep their representation. In
    a chain (click -> cart -> purchase) information flows all the way down: each
    link reads its parent's transferred output. All links are one batched matmul
    per projection, repeated once per chain depth.

    Args:
        num_tasks: towers in the input.
        links: `(parent, child)` task indices; a child has one parent, no cycles.
        dropout: dropout on the transferred representation `p`.

    Call arguments:
        inputs: `(batch, num_tasks, dim)`, each tower's last hidden layer.
        return_attention: also return each link's weights on `(q, p)`.

    Returns:
        `(batch, num_tasks, dim)`, and with `return_attention` the weights
        `(batch, links, 2)`, each row summing to 1.

    Example:

    ```python
    import numpy as np
    transfer = AdaptiveInformationTransfer(num_tasks=3, links=[(0, 1), (1, 2)])
    transfer(np.ones((16, 3, 32))).shape   # (16, 3, 32)
    ```
    """

    def __init__(self, num_tasks: int, links: Sequence[Sequence[int]], dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_tasks = num_tasks
        self.links = [[int(parent), int(child)] for parent, child in links]
        self.dropout = dropout
        children = [child for _, child in self.links]
        if not self.links:
            raise ValueError("links: expected at least one (parent, child) pair")
        if len(set(children)) < len(children):
            raise ValueError(f"links: a task has two parents in {self.links}")
        if any(not 0 <= i < num_tasks for link in self.links for i in link):
            raise ValueError(f"links: task indices must be in [0, {num_tasks}), got {self.links}")
        parent_of = {child: parent for parent, child in self.links}
        self.depth = 0
        for child in children:
            steps, task = 0, child
            while task in parent_of:
                steps, task = steps + 1, parent_of[task]
                if steps > len(self.links):
                    raise ValueError(f"links: the links form a cycle in {self.links}")
            self.depth = max(self.depth, steps)
        # Where each task's output comes from in [inputs, linked]: itself, or its link's result.
        link_of = {child: i for i, child in enumerate(children)}
        self._sources = [num_tasks + link_of[t] if t in link_of else t for t in range(num_tasks)]
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout else None

    def build(self, input_shape: tuple) -> None:
        dim = input_shape[-1]
        count = len(self.links)
        self.transfer = ParallelDense(count, dim, activation="relu", name="transfer")
        self.projections = [ParallelDense(count, dim, use_bias=False, name=name) for name in ("h1", "h2", "h3")]
        for layer in (self.transfer, *self.projections):
            layer.build((None, count, dim))
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None, return_attention: bool = False) -> Any:
        parents = [parent for parent, _ in self.links]
        own = ops.take(inputs, [child for _, child in self.links], axis=1)
        outputs = inputs
        # One dropout mask for all passes: each pass recomputes the links settled before it, and a
        # child must read the same parent output that the parent's own prediction uses.
        keep = None if self.dropout_layer is None else self.dropout_layer(ops.ones_like(own), training=training)
        # Pass d settles the links at depth d, whose parents settled in pass d - 1.
        for _ in range(self.depth):
            transferred = self.transfer(ops.take(outputs, parents, axis=1))
            if keep is not None:
                transferred = transferred * keep
            linked, weights = self._attend(own, transferred)
            outputs = ops.take(ops.concatenate([inputs, linked], axis=1), self._sources, axis=1)
        return (outputs, weights) if return_attention else outputs

    def _attend(self, own: Any, transferred: Any) -> tuple:
        """Attention of each link over its two items `(q, p)`, both `(batch, links, dim)`."""
        items = ops.stack([own, transferred], axis=0)  # (2, batch, links, dim)
        batch_first = ops.reshape(items, (-1, *items.shape[2:]))
        h1, h2, h3 = (ops.reshape(layer(batch_first), ops.shape(items)) for layer in self.projections)
        scores = ops.sum(h1 * h2, axis=-1) / math.sqrt(items.shape[-1])
        weights = ops.softmax(scores, axis=0)
        return ops.sum(weights[..., None] * h3, axis=0), ops.transpose(weights, (1, 2, 0))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def compute_output_spec(self, inputs: Any, training: bool | None = None, return_attention: bool = False) -> Any:
        # In a functional model the output structure depends on return_attention, which shapes alone do not say.
        outputs = keras.KerasTensor(tuple(inputs.shape), dtype=self.compute_dtype)
        weights = keras.KerasTensor((inputs.shape[0], len(self.links), 2), dtype=self.compute_dtype)
        return (outputs, weights) if return_attention else outputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_tasks=self.num_tasks, links=self.links, dropout=self.dropout)
        return config
