"""Mixed precision by name (`--mixed-precision`): which Keras dtype policy models are built under."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from tfmtl.errors import InputError

POLICIES = {"off": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def policy_name(mode: str) -> str:
    """The Keras dtype policy for `mode`: `off`, `bf16` (TPUs, CPUs, recent GPUs) or `fp16` (GPUs only).

    With `fp16`, `compile` wraps the optimizer in Keras' `LossScaleOptimizer` (dynamic
    loss scaling), which tfmtl's training step uses through `optimizer.scale_loss`.

    Example:

    ```python
    policy_name("bf16")   # "mixed_bfloat16"
    ```
    """
    if mode not in POLICIES:
        raise InputError(f"--mixed-precision: unknown mode {mode!r}, expected one of {', '.join(POLICIES)}")
    if mode == "fp16" and not tf.config.list_logical_devices("GPU"):
        raise InputError("--mixed-precision fp16: needs a GPU (float16 with loss scaling); use bf16 on CPUs and TPUs")
    return POLICIES[mode]


@contextlib.contextmanager
def dtype_policy(mode: str) -> Iterator[str]:
    """Builds layers created inside under `mode`'s policy; the global policy is restored after.

    Layers keep the policy they were created with, so a model built inside trains
    and saves with it. In tfmtl models the weights stay float32, the body computes
    in bfloat16/float16, and the feature encoder (lookups, embedding gathers,
    standardisation), the logits, outputs, losses and metrics stay float32.

    Example:

    ```python
    with strategy.scope(), tfmtl.distribute.dtype_policy("bf16"):
        model = tfmtl.zoo.MMoE(spec, tasks)
        model.compile()
    ```
    """
    with global_dtype_policy(policy_name(mode)) as name:
        yield name


@contextlib.contextmanager
def global_dtype_policy(policy: Any) -> Iterator[str]:
    """Sets Keras' global dtype policy (a name, a policy or its config; None keeps it) inside the block."""
    previous = keras.config.dtype_policy()
    if policy is not None:
        keras.config.set_dtype_policy(keras.dtype_policies.get(policy))
    try:
        yield keras.config.dtype_policy().name
    finally:
        keras.config.set_dtype_policy(previous)
