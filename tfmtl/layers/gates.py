"""Gate lookup: any gate, by name, options or instance, for the layers that mix experts."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import keras

from tfmtl.errors import InputError
from tfmtl.layers.dselect_k_gate import DSelectKGate
from tfmtl.layers.noisy_top_k_gate import NoisyTopKGate
from tfmtl.layers.softmax_gate import SoftmaxGate

# Names of the gates, as models and recipes spell them (`gate="noisy_top_k"`).
GATES: dict[str, type[keras.layers.Layer]] = {
    "softmax": SoftmaxGate,
    "noisy_top_k": NoisyTopKGate,
    "dselect_k": DSelectKGate,
}

GateSpec = str | Mapping[str, Any] | keras.layers.Layer


def gate_kind(gate: str | Mapping[str, Any]) -> str | dict[str, Any]:
    """Checks a gate kind, a name or `{"name": ..., **options}`, and returns it as plain data for configs."""
    if isinstance(gate, str):
        return gate
    if isinstance(gate, Mapping) and "class_name" not in gate:
        return dict(gate)
    raise InputError(f"gate: expected a gate name or {{'name': ..., **options}}, got {gate!r}")


def offset_seed(gate: GateSpec, offset: int) -> GateSpec:
    """`gate` with its `seed` option, where it has one, moved by `offset`.

    Gates built from one spec with a seed would otherwise draw the same noise.

    Example:

    ```python
    offset_seed({"name": "noisy_top_k", "seed": 7}, 2)  # {"name": "noisy_top_k", "seed": 9}
    ```
    """
    if isinstance(gate, Mapping) and "class_name" not in gate and gate.get("seed") is not None:
        return {**gate, "seed": int(gate["seed"]) + offset}
    return gate


def get_gate(gate: GateSpec, num_gates: int, num_experts: int, name: str = "gate") -> keras.layers.Layer:
    """Returns a gate layer of `num_gates` gates over `num_experts` experts.

    `gate` is a name from `GATES`, a dict `{"name": ..., **options}` such as
    `{"name": "noisy_top_k", "k": 1}`, a serialised gate (what `get_config` writes),
    or a gate layer, whose sizes must match.

    Example:

    ```python
    gate = get_gate({"name": "dselect_k", "k": 2}, num_gates=2, num_experts=8)
    ```
    """
    if isinstance(gate, keras.layers.Layer):
        layer = gate
    elif isinstance(gate, Mapping) and "class_name" in gate:
        layer = keras.saving.deserialize_keras_object(dict(gate))
    else:
        options = dict(gate) if isinstance(gate, Mapping) else {"name": gate}
        kind = options.pop("name", None)
        if kind not in GATES:
            raise InputError(f"gate: unknown gate {kind!r}, expected one of {', '.join(GATES)}")
        known = set(inspect.signature(GATES[kind].__init__).parameters) - {"self", "num_gates", "num_experts", "kwargs"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InputError(f"gate {kind!r}: unknown option(s) {unknown}, expected some of {', '.join(sorted(known))}")
        layer = GATES[kind](num_gates, num_experts, name=name, **options)
    sizes = (getattr(layer, "num_gates", None), getattr(layer, "num_experts", None))
    if sizes != (num_gates, num_experts):
        raise ValueError(f"gate: expected {num_gates} gate(s) over {num_experts} experts, got {sizes}")
    return layer
