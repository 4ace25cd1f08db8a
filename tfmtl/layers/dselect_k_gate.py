"""DSelectKGate: differentiable selection of k experts (Hazimeh et al., NeurIPS 2021)."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from tfmtl.layers.parallel_dense import ParallelDense

_EPSILON = 1e-6


@keras.saving.register_keras_serializable(package="tfmtl")
class DSelectKGate(keras.layers.Layer):
    """Mixes `k` differentiable single-expert selectors per gate into sparse expert weights.

    Each of a gate's `k` selectors encodes an expert index in `m = ceil(log2(experts))`
    soft bits: the bits are a smooth step (cubic between `-gamma/2` and `gamma/2`,
    exactly 0 or 1 outside) of per-example logits, and the selector's weight on
    expert `i` is the product over bits of the bit or its complement, following
    the binary code of `i`. A softmax over the `k` selectors mixes them. Once the
    bits saturate, every selector points at one expert, so at most `k` experts get
    weight, and training gets there by gradient descent alone. While training, an
    entropy regulariser on the selectors (`entropy_weight`, added with `add_loss`)
    speeds that up. Hazimeh et al., "DSelect-k: Differentiable Selection in the
    Mixture of Experts with Applications to Multi-Task Learning", NeurIPS 2021
    (the example-conditioned variant).

    When `num_experts` is not a power of 2, the codes past the last expert name
    experts again from the first (code `c` is expert `c mod num_experts`), so the
    weights are always a distribution; the paper instead penalises weight on the
    unused codes, which leaves rows that do not sum to 1 until the penalty wins.

    Args:
        num_gates: how many gates (one per task in MMoE).
        num_experts: how many experts each gate weighs.
        k: selectors per gate, so at most `k` experts in the end.
        gamma: width of the smooth step's cubic region.
        entropy_weight: weight of the selectors' mean entropy (0 turns it off).

    Call arguments:
        inputs: `(batch, input_dim)` read by every gate, or
            `(batch, num_gates, input_dim)`, one input per gate.
        training: whether to add the auxiliary losses.

    Returns:
        Gate weights `(batch, num_gates, num_experts)`; each row sums to 1.

    Example:

    ```python
    import numpy as np
    gate = DSelectKGate(num_gates=2, num_experts=8, k=2)
    gate(np.ones((32, 100))).shape   # (32, 2, 8)
    ```
    """

    def __init__(
        self,
        num_gates: int,
        num_experts: int,
        k: int = 2,
        gamma: float = 1.0,
        entropy_weight: float = 0.01,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if k < 1 or num_experts < 1:
            raise ValueError(f"k and num_experts must be >= 1, got k={k}, num_experts={num_experts}")
        if gamma <= 0:
            raise ValueError(f"gamma: expected a positive width, got {gamma}")
        self.num_gates = num_gates
        self.num_experts = num_experts
        self.k = k
        self.gamma = gamma
        self.entropy_weight = entropy_weight
        self.num_bits = max(1, math.ceil(math.log2(num_experts)))
        # The paper starts the bits near 0.5 (every expert equally likely).
        near_half = keras.initializers.RandomUniform(-gamma / 100, gamma / 100)
        self.bit_logits = ParallelDense(
            num_gates, k * self.num_bits, kernel_initializer=near_half, bias_initializer=near_half, name="bit_logits"
        )
        self.selector_logits = ParallelDense(num_gates, k, name="selector_logits")
        codes = np.arange(2**self.num_bits)
        self._bits_of_code = ((codes[:, None] >> np.arange(self.num_bits)[::-1]) & 1).astype("float32")
        self._expert_of_code = np.eye(num_experts, dtype="float32")[codes % num_experts]  # (codes, experts)

    def build(self, input_shape: tuple) -> None:
        self.bit_logits.build(input_shape)
        self.selector_logits.build(input_shape)
        super().build(input_shape)

    def _smooth_step(self, x: Any) -> Any:
        half = self.gamma / 2
        cubic = -2.0 / self.gamma**3 * x**3 + 1.5 / self.gamma * x + 0.5
        return ops.where(x <= -half, 0.0, ops.where(x >= half, 1.0, cubic))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        # In float32 under mixed precision, so that each row of weights sums to 1.
        bits = self._smooth_step(ops.cast(self.bit_logits(inputs), "float32"))  # (batch, gates, k * bits)
        bits = ops.reshape(bits, (-1, self.num_gates, self.k, 1, self.num_bits))
        codes = ops.convert_to_tensor(self._bits_of_code, dtype=bits.dtype)  # (codes, bits)
        # A selector's weight on a code: product over bits of bit (code bit 1) or 1 - bit (code bit 0).
        selectors = ops.prod(codes * bits + (1.0 - codes) * (1.0 - bits), axis=-1)  # (batch, gates, k, codes)
        selectors = ops.einsum("bgkc,ce->bgke", selectors, ops.convert_to_tensor(self._expert_of_code, selectors.dtype))
        mixing = ops.softmax(ops.cast(self.selector_logits(inputs), "float32"), axis=-1)  # (batch, gates, k)
        weights = ops.einsum("bgk,bgke->bge", mixing, selectors)
        if training and self.entropy_weight:
            entropy = -ops.sum(selectors * ops.log(selectors + _EPSILON), axis=-1)
            self.add_loss(self.entropy_weight * ops.mean(ops.sum(entropy, axis=(1, 2))))
        return weights

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.num_gates, self.num_experts)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_gates=self.num_gates,
            num_experts=self.num_experts,
            k=self.k,
            gamma=self.gamma,
            entropy_weight=self.entropy_weight,
        )
        return config
