"""ParallelDense: many independent dense layers computed as one batched matmul."""

from __future__ import annotations

import copy
from typing import Any

import keras
import tensorflow as tf
from keras import ops

# Activations that act on each value alone, so they may run before the members' axis is split
# off (where TensorFlow fuses them into the matmul); others (softmax, custom ones) run after.
_ELEMENTWISE = tuple(
    getattr(keras.activations, name)
    for name in ("linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "sigmoid", "tanh", "softplus")
)


@keras.saving.register_keras_serializable(package="tfmtl")
class ParallelDense(keras.layers.Layer):
    """Applies `num_units` independent dense layers side by side in one einsum.

    Experts of a mixture and per-task towers are banks of small dense layers; as
    one stacked kernel of shape `(parallel, input_dim, units)` they cost one
    batched matmul instead of a Python loop over layers.

    Args:
        parallel: how many independent dense layers.
        units: output size of each.
        activation: activation of each.
        use_bias: whether each has a bias.
        kernel_initializer, bias_initializer, kernel_regularizer: as in
            `keras.layers.Dense`, applied to every member.

    Call arguments:
        inputs: `(batch, input_dim)`, shared by all members, or
            `(batch, parallel, input_dim)`, one input per member.

    Returns:
        `(batch, parallel, units)`.

    Example:

    ```python
    import numpy as np
    experts = ParallelDense(parallel=8, units=64, activation="relu")
    experts(np.ones((32, 100))).shape      # (32, 8, 64)
    ```
    """

    def __init__(
        self,
        parallel: int,
        units: int,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        bias_initializer: str | keras.initializers.Initializer = "zeros",
        kernel_regularizer: str | keras.regularizers.Regularizer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if parallel < 1 or units < 1:
            raise ValueError(f"parallel and units must be >= 1, got parallel={parallel}, units={units}")
        self.parallel = parallel
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape: tuple) -> None:
        input_dim = input_shape[-1]
        # Glorot fan-in/fan-out of one member, not of the stacked tensor.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.parallel, input_dim, self.units),
            initializer=_per_member(self.kernel_initializer, input_dim, self.units),
            regularizer=self.kernel_regularizer,
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.parallel, self.units), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )
        super().build(input_shape)

    def call(self, inputs: Any) -> Any:
        if len(inputs.shape) == 2:
            return self._call_shared_input(inputs)
        # Members first for a batched matmul: faster than the equivalent einsum.
        outputs = ops.transpose(ops.matmul(ops.transpose(inputs, (1, 0, 2)), self.kernel), (1, 0, 2))
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def _call_shared_input(self, inputs: Any) -> Any:
        """One GEMM against all members' kernels side by side, as a plain dense layer of `parallel * units`.

        In that 2-D form TensorFlow fuses the matmul, `bias_add` and an elementwise
        activation into one kernel (and the bias gradient into one reduction).
        """
        width = self.parallel * self.units
        outputs = ops.matmul(inputs, ops.reshape(ops.transpose(self.kernel, (1, 0, 2)), (-1, width)))
        if self.bias is not None:
            outputs = tf.nn.bias_add(outputs, ops.reshape(self.bias, (width,)))
        if self.activation in _ELEMENTWISE:
            return ops.reshape(self.activation(outputs), (-1, self.parallel, self.units))
        return self.activation(ops.reshape(outputs, (-1, self.parallel, self.units)))

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.parallel, self.units)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            parallel=self.parallel,
            units=self.units,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        )
        return config


def _per_member(initializer: keras.initializers.Initializer, fan_in: int, fan_out: int):
    """Wraps an initializer so each member is initialised as its own `(fan_in, fan_out)` kernel.

    Keras initializers return the same values on every call, so each member gets a
    fresh copy (with `seed + member` when a seed was set): members must start different.
    """
    config = keras.initializers.serialize(initializer)

    def member(index: int) -> keras.initializers.Initializer:
        member_config = copy.deepcopy(config)
        inner = member_config.get("config", {}) if isinstance(member_config, dict) else {}
        if inner.get("seed") is not None:
            inner["seed"] = inner["seed"] + index
        return keras.initializers.deserialize(member_config)

    def initialize(shape: tuple, dtype: Any = None) -> Any:
        return ops.stack([member(i)((fan_in, fan_out), dtype=dtype) for i in range(shape[0])], axis=0)

    return initialize
