"""Serialized `tf.Example` protos to raw model inputs, and back, for the tf.Example signature."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from tfmtl.export.serving_inputs import missing_value
from tfmtl.features.feature import FLOAT32, INT64, ListFeature
from tfmtl.features.spec import FeatureSpec


def example_parsing_spec(spec: FeatureSpec) -> dict[str, tf.io.FixedLenFeature | tf.io.RaggedFeature]:
    """The `tf.io.parse_example` features: keys are feature names, absent features read as missing.

    A list feature is a `bytes_list` of its values (one separator-joined string
    works too); every other feature holds one value of its raw dtype.
    """
    parsing: dict[str, tf.io.FixedLenFeature | tf.io.RaggedFeature] = {}
    for feature in spec:
        if isinstance(feature, ListFeature):
            parsing[feature.name] = tf.io.RaggedFeature(tf.string)
        else:
            parsing[feature.name] = tf.io.FixedLenFeature([], feature.dtype, default_value=missing_value(feature))
    return parsing


def parse_examples(spec: FeatureSpec, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses a `(batch,)` string tensor of serialized `tf.Example`s into raw model inputs.

    Example:

    ```python
    import pandas as pd
    df = pd.DataFrame({"city": ["Oslo", "Rome"], "age": [31.0, 40.0]})
    spec = FeatureSpec.infer(df)
    parse_examples(spec, tf.constant(serialize_examples(spec, spec.input_arrays(df))))["city"]
    ```
    """
    parsed = tf.io.parse_example(serialized, example_parsing_spec(spec))
    for feature in spec.of_kind("list"):
        parsed[feature.name] = tf.strings.reduce_join(parsed[feature.name], axis=-1, separator=feature.separator)
    return parsed


def serialize_examples(spec: FeatureSpec, inputs: Mapping[str, np.ndarray]) -> list[bytes]:
    """Serializes raw model inputs (as `FeatureSpec.input_arrays` gives them) into `tf.Example`s.

    Missing values (NaN, the empty string, an empty list) are left out of the
    example, which is how a client sends a missing feature.

    Example:

    ```python
    train, _ = tfmtl.datasets.census_income()
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    examples = serialize_examples(features, features.input_arrays(train.head(2)))   # two serialized tf.Examples
    ```
    """
    rows = len(next(iter(inputs.values())))
    examples = [tf.train.Example() for _ in range(rows)]
    for feature in spec:
        for example, value in zip(examples, inputs[feature.name]):
            if isinstance(feature, ListFeature):
                values = [v.encode() for v in str(value).split(feature.separator) if v]
            elif feature.dtype == FLOAT32:
                values = [] if np.isnan(value) else [float(value)]
            elif feature.dtype == INT64:
                values = [int(value)]
            else:
                values = [str(value).encode()] if value != "" else []
            if not values:
                continue
            field = example.features.feature[feature.name]
            if feature.dtype == FLOAT32:
                field.float_list.value.extend(values)
            elif feature.dtype == INT64:
                field.int64_list.value.extend(values)
            else:
                field.bytes_list.value.extend(values)
    return [example.SerializeToString() for example in examples]
