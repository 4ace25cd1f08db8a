"""TF Serving warm-up requests: a few real requests replayed when a model version loads."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from tfmtl.export.archive import SERVING_DEFAULT, TF_EXAMPLE, TF_EXAMPLE_INPUT
from tfmtl.export.names import signature_names
from tfmtl.export.serving_inputs import missing_value
from tfmtl.export.tf_example import serialize_examples
from tfmtl.features.feature import INT64, ListFeature, NumericFeature
from tfmtl.features.spec import FeatureSpec

# Where TF Serving looks for them, relative to a version directory.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def typical_inputs(spec: FeatureSpec, rows: int) -> dict[str, np.ndarray]:
    """Raw inputs built from the training statistics alone, for when no training rows are at hand.

    Row `i` takes each categorical feature's `i`-th most frequent value, two values
    for list features, and the training mean for numeric features.
    """
    inputs: dict[str, np.ndarray] = {}
    for feature in spec:
        if isinstance(feature, NumericFeature):
            inputs[feature.name] = np.full(rows, feature.mean, np.float32)
            continue
        vocabulary = list(getattr(feature, "vocabulary", ())) or [missing_value(feature)]
        take = 2 if isinstance(feature, ListFeature) else 1
        picked = [vocabulary[i % len(vocabulary) :][:take] for i in range(rows)]
        if isinstance(feature, ListFeature):
            inputs[feature.name] = np.array([feature.separator.join(values) for values in picked], object)
        elif feature.dtype == INT64:
            inputs[feature.name] = np.array([int(value) for (value,) in picked], np.int64)
        else:
            inputs[feature.name] = np.array([str(value) for (value,) in picked], object)
    return inputs


def warmup_logs(spec: FeatureSpec, inputs: Mapping[str, np.ndarray]) -> list:
    """`PredictionLog`s for both signatures, at batch size 1 and at the size of `inputs`."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    names = signature_names(spec.names, "feature")
    rows = len(next(iter(inputs.values())))
    logs = []
    for size in sorted({1, rows}):
        batch = {name: values[:size] for name, values in inputs.items()}
        raw = predict_pb2.PredictRequest()
        raw.model_spec.signature_name = SERVING_DEFAULT
        for feature in spec:
            raw.inputs[names[feature.name]].CopyFrom(tf.make_tensor_proto(batch[feature.name], dtype=feature.dtype))
        examples = predict_pb2.PredictRequest()
        examples.model_spec.signature_name = TF_EXAMPLE
        examples.inputs[TF_EXAMPLE_INPUT].CopyFrom(
            tf.make_tensor_proto(serialize_examples(spec, batch), dtype=tf.string)
        )
        for request in (raw, examples):
            logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def write_warmup_requests(path: str | os.PathLike, spec: FeatureSpec, inputs: Mapping[str, np.ndarray]) -> None:
    """Writes the warm-up `PredictionLog`s as a TFRecord file at `path`.

    Example:

    ```python
    import pandas as pd
    df = pd.DataFrame({"city": ["Oslo", "Rome"], "age": [31.0, 40.0]})
    spec = FeatureSpec.infer(df)
    write_warmup_requests("tf_serving_warmup_requests", spec, spec.input_arrays(df))
    ```
    """
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with tf.io.TFRecordWriter(os.fspath(path)) as writer:
        for log in warmup_logs(spec, inputs):
            writer.write(log.SerializeToString())
