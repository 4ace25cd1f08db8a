"""The SavedModel archive of a model: a raw-feature and a tf.Example serving signature."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from tfmtl.errors import InputError
from tfmtl.export.names import signature_names
from tfmtl.export.serving_inputs import input_signature
from tfmtl.export.tf_example import parse_examples

SERVING_DEFAULT = "serving_default"
TF_EXAMPLE = "tf_example"
# The input name of TF Serving's classify and regress signatures.
TF_EXAMPLE_INPUT = tf.saved_model.CLASSIFY_INPUTS


def serving_archive(model: Any) -> tuple[keras.export.ExportArchive, dict[str, tuple[str, tf.TensorSpec]]]:
    """Returns an `ExportArchive` of `model` with its two serving signatures, and their outputs.

    `serving_default` takes one named input per raw feature (see `input_signature`);
    `tf_example` takes a `(batch,)` string tensor `inputs` of serialized
    `tf.Example`s keyed by feature name. Both return every output `model(...)`
    returns, named by its signature name; the outputs are returned as a dict from
    signature name to `(model output name, tf.TensorSpec)`.

    The signatures are explicit: Keras' default export of a model with dict inputs
    names them `args_0`, `args_0_1`, ... and guesses float32 for string features.

    Example:

    ```python
    archive, outputs = serving_archive(model)   # a compiled or trained MultiTaskModel
    archive.write_out("serving/mmoe/1")   # what model.export does, without the warm-up and the checks
    ```
    """
    spec = model.feature_spec
    output_names: dict[str, str] = {}
    features_by_input = {served: name for name, served in signature_names(spec.names, "feature").items()}

    def named_outputs(inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs = model(inputs, training=False)
        if not isinstance(outputs, Mapping):
            raise InputError(f"model: expected call() to return a dict of named outputs, got {type(outputs).__name__}")
        served = signature_names(outputs, "output")
        output_names.update({served[name]: name for name in outputs})
        return {served[name]: tensor for name, tensor in outputs.items()}

    def serve_raw_features(inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return named_outputs({features_by_input[name]: value for name, value in inputs.items()})

    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return named_outputs(parse_examples(spec, serialized))

    archive = keras.export.ExportArchive()
    archive.track(model)
    raw_endpoint = archive.add_endpoint(SERVING_DEFAULT, serve_raw_features, input_signature=[input_signature(spec)])
    archive.add_endpoint(
        TF_EXAMPLE, serve_examples, input_signature=[tf.TensorSpec((None,), tf.string, name=TF_EXAMPLE_INPUT)]
    )
    specs = raw_endpoint.get_concrete_function().structured_outputs
    return archive, {name: (output_names[name], tf.TensorSpec.from_tensor(specs[name])) for name in specs}
