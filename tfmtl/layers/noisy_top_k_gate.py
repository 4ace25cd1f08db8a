"""NoisyTopKGate: sparse gating with tunable noise and load balancing (Shazeer et al., 2017)."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from tfmtl.layers.parallel_dense import ParallelDense

# Keeps the noise scale and the coefficient of variation away from a division by zero.
_EPSILON = 1e-6


@keras.saving.register_keras_serializable(package="tfmtl")
class NoisyTopKGate(keras.layers.Layer):
    """Keeps each example's `k` best experts per gate and softmaxes over them.

    Gate `g` computes `H = x W_g + eps * softplus(x W_noise)` with standard normal
    `eps` (noise only while training), keeps the top `k` entries of `H` and
    softmaxes over them; the other experts get exactly 0. While training it adds
    the paper's two load-balancing losses with `add_loss`: the squared coefficient
    of variation over experts of each gate's batch *importance* (summed weights) and
    of its smooth *load* estimate (the probability, under the noise, that each
    expert is in the top `k`). Shazeer et al., "Outrageously Large Neural Networks:
    The Sparsely-Gated Mixture-of-Experts Layer", ICLR 2017. Both kernels start at
    zero as in the paper: at first the noise alone picks the experts.

    Args:
        num_gates: how many gates (one per task in MMoE).
        num_experts: how many experts each gate weighs.
        k: experts kept per example and gate, `1 <= k <= num_experts`.
        noise: add the learned Gaussian noise while training.
        importance_weight: weight of the importance loss (0 turns it off).
        load_weight: weight of the load loss (0 turns it off; it needs `noise` and
            `k < num_experts`).
        seed: seed of the noise.

    Call arguments:
        inputs: `(batch, input_dim)` read by every gate, or
            `(batch, num_gates, input_dim)`, one input per gate.
        training: whether to add noise and the auxiliary losses.

    Returns:
        Gate weights `(batch, num_gates, num_experts)`: each row sums to 1 and has
        at most `k` non-zeros (more only when logits tie).

    Example:

    ```python
    import numpy as np
    gate = NoisyTopKGate(num_gates=2, num_experts=8, k=2)
    gate(np.ones((32, 100))).shape   # (32, 2, 8)
    ```
    """

    def __init__(
        self,
        num_gates: int,
        num_experts: int,
        k: int = 2,
        noise: bool = True,
        importance_weight: float = 0.01,
        load_weight: float = 0.01,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= k <= num_experts:
            raise ValueError(f"k: expected 1 <= k <= num_experts={num_experts}, got {k}")
        self.num_gates = num_gates
        self.num_experts = num_experts
        self.k = k
        self.noise = noise
        self.importance_weight = importance_weight
        self.load_weight = load_weight
        self.seed = seed
        self.logits = ParallelDense(num_gates, num_experts, kernel_initializer="zeros", name="logits")
        self.noise_scale = (
            ParallelDense(num_gates, num_experts, kernel_initializer="zeros", name="noise_scale") if noise else None
        )
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: tuple) -> None:
        self.logits.build(input_shape)
        if self.noise_scale is not None:
            self.noise_scale.build(input_shape)
        super().build(input_shape)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        # In float32 under mixed precision, so that each row of weights sums to 1.
        clean = ops.cast(self.logits(inputs), "float32")  # (batch, gates, experts)
        noisy, stddev = clean, None
        if training and self.noise_scale is not None:
            stddev = ops.softplus(ops.cast(self.noise_scale(inputs), "float32")) + _EPSILON
            noisy = clean + keras.random.normal(ops.shape(clean), dtype=clean.dtype, seed=self.seed_generator) * stddev
        top = ops.top_k(noisy, min(self.k + 1, self.num_experts), sorted=True)[0]
        kth = top[..., self.k - 1 : self.k]
        kept = noisy >= kth
        weights = ops.softmax(ops.where(kept, noisy, ops.full_like(noisy, -1e9)), axis=-1)
        if training:
            # Auxiliary losses in float32 under mixed precision: Keras adds them to the float32 loss.
            if self.importance_weight:
                importance = ops.sum(weights, axis=0)
                self.add_loss(self.importance_weight * _squared_variation(importance))
            if self.load_weight and stddev is not None and self.k < self.num_experts:
                # P(expert e is in the top k if only its own noise were redrawn): it must beat
                # the k-th best of the other experts, the (k+1)-th overall when e is in the top k.
                threshold = ops.where(kept, top[..., self.k : self.k + 1], kth)
                in_top = _normal_cdf((clean - threshold) / stddev)
                self.add_loss(self.load_weight * _squared_variation(ops.sum(in_top, axis=0)))
        return weights

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.num_gates, self.num_experts)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_gates=self.num_gates,
            num_experts=self.num_experts,
            k=self.k,
            noise=self.noise,
            importance_weight=self.importance_weight,
            load_weight=self.load_weight,
            seed=self.seed,
        )
        return config


def _squared_variation(totals: Any) -> Any:
    """Sum over gates of the squared coefficient of variation over experts; `totals` is `(gates, experts)`."""
    mean = ops.mean(totals, axis=-1)
    return ops.sum(ops.var(totals, axis=-1) / (ops.square(mean) + _EPSILON))


def _normal_cdf(x: Any) -> Any:
    return 0.5 * (1.0 + ops.erf(x / math.sqrt(2.0)))
