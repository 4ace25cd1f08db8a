"""A JSON description of an export's signatures, for the people who write its clients."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from tfmtl.export.archive import SERVING_DEFAULT, TF_EXAMPLE, TF_EXAMPLE_INPUT
from tfmtl.export.names import signature_names
from tfmtl.export.serving_inputs import missing_value
from tfmtl.features.spec import FeatureSpec

# Beside the warm-up requests: TF Serving does not load files from assets.extra.
DESCRIPTION_FILE = os.path.join("assets.extra", "tfmtl_signatures.json")


def describe_signatures(
    spec: FeatureSpec, tasks: Sequence[Any], outputs: Mapping[str, tuple[str, tf.TensorSpec]]
) -> dict[str, Any]:
    """Says, per signature input and output, which feature or task it is and how to read it.

    Both signatures have the same outputs.

    `outputs` maps each output's signature name to the model's output name and its
    `tf.TensorSpec` (as `serving_archive` returns them). A `(batch, n)` output of a
    multiclass task lists the class of each column; outputs that are no task's (such
    as a task chain's derived probabilities) have kind `"derived"`.
    """
    names = signature_names(spec.names, "feature")
    tasks_by_name = {task.name: task for task in tasks}
    inputs = {}
    for feature in spec:
        missing = missing_value(feature)
        inputs[names[feature.name]] = {
            "feature": feature.name,
            "kind": feature.kind,
            "dtype": feature.dtype,
            "missing_value": "NaN" if isinstance(missing, float) and math.isnan(missing) else missing,
            **({"separator": feature.separator} if feature.kind == "list" else {}),
        }
    described_outputs = {}
    for served, (name, tensor_spec) in outputs.items():
        task = tasks_by_name.get(name)
        described = {"model_output": name, "kind": task.kind if task else "derived", "dtype": tensor_spec.dtype.name,
                     "shape": [-1 if d is None else d for d in tensor_spec.shape.as_list()]}
        if task is not None and task.classes is not None:
            described["classes"] = task.get_config()["classes"]
        described_outputs[served] = described
    return {
        "signatures": {
            SERVING_DEFAULT: {"inputs": inputs},
            TF_EXAMPLE: {"inputs": {TF_EXAMPLE_INPUT: "serialized tf.Example protos keyed by feature name"}},
        },
        "outputs": described_outputs,
    }
