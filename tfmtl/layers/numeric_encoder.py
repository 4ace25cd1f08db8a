"""NumericEncoder: raw numeric features to one standardised matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfmtl.features.feature import NumericFeature, feature_from_config, feature_to_config


@keras.saving.register_keras_serializable(package="tfmtl")
class NumericEncoder(keras.layers.Layer):
    """Stacks numeric features and standardises them with their training statistics.

    A missing value (NaN) becomes the training mean, i.e. 0 after standardisation.
    Features whose training data had missing values also get a 0/1 "was missing"
    column, so the model can tell an imputed mean from a real one.

    Args:
        features: the numeric features, with `mean`, `variance` and
            `missing_indicator` from the training data.

    Call arguments:
        inputs: dict from feature name to a float batch of shape `(batch,)`.

    Returns:
        A tensor of shape `(batch, num_features + num_indicators)` in the compute dtype (float32 unless
        under mixed precision).

    Example:

    ```python
    import numpy as np
    from tfmtl.features import NumericFeature
    layer = NumericEncoder([NumericFeature("age", mean=40.0, variance=100.0)])
    layer({"age": np.array([30.0, np.nan])})   # [[-1.], [0.]]
    ```
    """

    def __init__(self, features: Sequence[NumericFeature | Mapping[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.features = [f if not isinstance(f, Mapping) else feature_from_config(f) for f in features]
        mean = np.array([f.mean for f in self.features], np.float32)
        # A constant column has zero variance; Normalization guards the division itself.
        variance = np.array([f.variance for f in self.features], np.float32)
        self._mean = mean
        self._indicator_columns = [i for i, f in enumerate(self.features) if f.missing_indicator]
        self.normalization = keras.layers.Normalization(mean=mean, variance=variance, name="normalization")

    @property
    def output_dim(self) -> int:
        return len(self.features) + len(self._indicator_columns)

    def columns(self) -> dict[str, list[int]]:
        """Each feature's output columns: its standardised value, then its missing indicator if it has one."""
        out = {f.name: [i] for i, f in enumerate(self.features)}
        for position, i in enumerate(self._indicator_columns):
            out[self.features[i].name].append(len(self.features) + position)
        return out

    def build(self, input_shape: Any = None) -> None:
        self.normalization.build((None, len(self.features)))
        super().build(input_shape)

    @property
    def values_key(self) -> str:
        """The key under which `call`'s result may be passed instead of raw values."""
        return f"{self.name}/values"

    def call(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        if self.values_key in inputs:
            return inputs[self.values_key]
        values = tf.stack([tf.reshape(tf.cast(inputs[f.name], tf.float32), [-1]) for f in self.features], axis=1)
        missing = tf.math.is_nan(values)
        values = self.normalization(tf.where(missing, tf.constant(self._mean), values))
        if not self._indicator_columns:
            return values
        indicators = tf.cast(tf.gather(missing, self._indicator_columns, axis=1), values.dtype)
        return tf.concat([values, indicators], axis=1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (None, self.output_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["features"] = [feature_to_config(f) for f in self.features]
        return config
