"""What a served model takes: one named, typed input per raw feature, and the value that means "missing"."""

from __future__ import annotations

import tensorflow as tf

# A served model reads the smallest int64 as a missing code, as the data pipeline writes a blank
# one: no vocabulary holds it, so it lands in the feature's out-of-vocabulary row.
from tfmtl.features.feature import FLOAT32, INT64, MISSING_INT64, Feature
from tfmtl.features.spec import FeatureSpec
from tfmtl.export.names import signature_names


def missing_value(feature: Feature) -> str | int | float:
    """The raw value that stands for a missing `feature` when serving.

    `""` for string features (a missing category: its own category when training
    data had empty values, the out-of-vocabulary row otherwise; an empty list for
    list features), NaN for numeric features (the training mean, plus the "was
    missing" indicator when training had missing values), and the smallest int64
    for int64 categoricals (the out-of-vocabulary row).

    Example:

    ```python
    from tfmtl.features import NumericFeature
    missing_value(NumericFeature("age"))   # nan
    ```
    """
    if feature.dtype == FLOAT32:
        return float("nan")
    if feature.dtype == INT64:
        return MISSING_INT64
    return ""


def input_signature(spec: FeatureSpec) -> dict[str, tf.TensorSpec]:
    """One `(batch,)` `tf.TensorSpec` per raw feature, keyed and named by its signature name.

    Dtypes are the features' raw dtypes (string, int64, float32); a list feature is
    one separator-joined string per example.

    Example:

    ```python
    import pandas as pd
    spec = FeatureSpec.infer(pd.DataFrame({"Review Text": ["good", "bad"], "age": [31.0, 40.0]}))
    input_signature(spec)["Review_Text"]   # TensorSpec(shape=(None,), dtype=tf.string, name='Review_Text')
    ```
    """
    names = signature_names(spec.names, "feature")
    return {names[f.name]: tf.TensorSpec((None,), f.dtype, name=names[f.name]) for f in spec}
