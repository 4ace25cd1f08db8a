"""TaskAttentionFusion: each task attends over shared representations with its own query."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfmtl")
class TaskAttentionFusion(keras.layers.Layer):
    """Gives every task a learned query that attends over a set of shared tokens.

    The tokens are what tasks may share: expert outputs and, optionally, feature
    field embeddings. Task `t`'s query attends over them with
    `keras.layers.MultiHeadAttention`, so each task picks what to read per
    example and per head, instead of through one softmax gate over experts. The
    queries are their own layer (`task_queries`, one row per task), apart from
    the attention's shared projections.

    Args:
        num_tasks: how many tasks (queries).
        num_heads: attention heads.
        key_dim: size of each head's query and key; by default the token size
            divided by `num_heads` (at least 1).
        dropout: dropout on the attention weights.

    Call arguments:
        tokens: `(batch, num_tokens, units)`.
        token_mask: optional `(batch, num_tokens)` booleans, False for tokens no task
            may attend to.
        training: attention dropout.
        return_attention_scores: also return the attention weights.

    Returns:
        `(batch, num_tasks, units)`, and with `return_attention_scores` the weights
        `(batch, num_heads, num_tasks, num_tokens)` (each row sums to 1).

    Example:

    ```python
    import numpy as np
    fusion = TaskAttentionFusion(num_tasks=2, num_heads=2)
    fusion(np.ones((4, 8, 16))).shape   # (4, 2, 16)
    ```
    """

    def __init__(
        self, num_tasks: int, num_heads: int = 2, key_dim: int | None = None, dropout: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if num_tasks < 1 or num_heads < 1:
            raise ValueError(f"num_tasks and num_heads must be >= 1, got {num_tasks}, {num_heads}")
        self.num_tasks = num_tasks
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.dropout = dropout
        self.task_queries: keras.layers.Embedding | None = None
        self.attention: keras.layers.MultiHeadAttention | None = None

    def build(self, tokens_shape: tuple) -> None:
        units = tokens_shape[-1]
        # Sizes follow the tokens, so these sublayers are made here rather than in __init__.
        self.task_queries = keras.layers.Embedding(
            self.num_tasks, units, embeddings_initializer="random_normal", name="task_queries"
        )
        self.task_queries.build((self.num_tasks,))
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, self.key_dim or max(units // self.num_heads, 1), dropout=self.dropout, name="attention"
        )
        self.attention.build((None, self.num_tasks, units), tuple(tokens_shape))
        super().build(tokens_shape)

    def call(
        self,
        tokens: Any,
        token_mask: Any = None,
        training: bool | None = None,
        return_attention_scores: bool = False,
    ) -> Any:
        queries = self.task_queries(ops.arange(self.num_tasks))  # (tasks, units)
        queries = ops.broadcast_to(queries[None], (ops.shape(tokens)[0], self.num_tasks, queries.shape[-1]))
        attention_mask = None
        if token_mask is not None:
            attention_mask = ops.broadcast_to(
                ops.cast(token_mask, "bool")[:, None, :], (ops.shape(tokens)[0], self.num_tasks, ops.shape(tokens)[1])
            )
        # Without scores Keras can use its fused dot-product attention.
        return self.attention(
            queries,
            tokens,
            attention_mask=attention_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )

    def compute_output_shape(self, tokens_shape: tuple) -> tuple:
        return (tokens_shape[0], self.num_tasks, tokens_shape[-1])

    def compute_output_spec(
        self, tokens: Any, token_mask: Any = None, training: bool | None = None, return_attention_scores: bool = False
    ) -> Any:
        # In a functional model the output structure depends on return_attention_scores, which shapes alone do not say.
        outputs = keras.KerasTensor(self.compute_output_shape(tokens.shape), dtype=self.compute_dtype)
        shape = (tokens.shape[0], self.num_heads, self.num_tasks, tokens.shape[1])
        return (outputs, keras.KerasTensor(shape, dtype=self.compute_dtype)) if return_attention_scores else outputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(num_tasks=self.num_tasks, num_heads=self.num_heads, key_dim=self.key_dim, dropout=self.dropout)
        return config
