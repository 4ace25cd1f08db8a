"""FeatureEncoder: the shared encoder from raw feature values to one dense vector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from tfmtl.errors import InputError
from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.field_embedding import FieldEmbedding
from tfmtl.layers.numeric_encoder import NumericEncoder


@keras.saving.register_keras_serializable(package="tfmtl")
class FeatureEncoder(keras.layers.Layer):
    """Turns a dict of raw feature values into the dense vector all tasks share.

    Categorical, hashed and list features are embedded with one fused table per
    embedding size (a single gather for all features of that size); numeric features
    are standardised. The output is the flattened field embeddings followed by the
    numeric columns.

    Args:
        features: the `FeatureSpec` (or its config).
        fused: `True` (default) puts all features of one embedding size into one
            table; `False` gives every feature its own table.

    Call arguments:
        inputs: dict from feature name to a batch of raw values, shape `(batch,)`.

    Returns:
        A tensor of shape `(batch, output_dim)` in the compute dtype (float32 unless under mixed
        precision).

    Example:

    ```python
    import pandas as pd
    from tfmtl import FeatureSpec
    df = pd.DataFrame({"age": [25.0, 40.0], "city": ["Oslo", "Rome"]})
    spec = FeatureSpec.infer(df, embedding_dim=4)
    encoder = FeatureEncoder(spec)
    encoder(spec.input_arrays(df)).shape   # (2, 5)
    ```
    """

    def __init__(self, features: FeatureSpec | Mapping[str, Any], fused: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = features if isinstance(features, FeatureSpec) else FeatureSpec.from_config(features)
        self.fused = fused
        embedded = self.spec.of_kind("categorical", "hashed", "list")
        if fused:
            by_dim: dict[int, list] = {}
            for feature in embedded:
                by_dim.setdefault(feature.embedding_dim, []).append(feature)
            groups = [by_dim[dim] for dim in sorted(by_dim)]
        else:
            groups = [[feature] for feature in embedded]
        self.field_embeddings = [
            FieldEmbedding(group, name=f"embedding_{group[0].embedding_dim}d" if fused else f"embedding_{i}")
            for i, group in enumerate(groups)
        ]
        numeric = self.spec.of_kind("numeric")
        self.numeric_encoder = NumericEncoder(numeric, name="numeric") if numeric else None

    @property
    def output_dim(self) -> int:
        dim = sum(len(e.features) * e.embedding_dim for e in self.field_embeddings)
        return dim + (self.numeric_encoder.output_dim if self.numeric_encoder else 0)

    def columns(self, names: Sequence[str]) -> list[int]:
        """The columns of the encoded matrix that hold the features `names` (embeddings, values, indicators).

        Example:

        ```python
        encoder.columns(["city"])   # [0, 1, 2, 3]: its embedding of 4
        ```
        """
        positions: dict[str, list[int]] = {}
        start = 0
        for layer in self.field_embeddings:
            for name in layer.field_names:
                positions[name] = list(range(start, start + layer.embedding_dim))
                start += layer.embedding_dim
        if self.numeric_encoder is not None:
            for name, columns in self.numeric_encoder.columns().items():
                positions[name] = [start + column for column in columns]
        unknown = [name for name in names if name not in positions]
        if unknown:
            raise InputError(f"features {unknown}: not in the FeatureSpec, which has {sorted(positions)}")
        return [column for name in names for column in positions[name]]

    def build(self, input_shape: Any = None) -> None:
        for layer in self.field_embeddings:
            layer.build()
        if self.numeric_encoder:
            self.numeric_encoder.build()
        super().build(input_shape)

    def preprocess(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Runs all preprocessing without weights: raw values to table rows and standardised numbers.

        The encoder (and so the model) accepts the result in place of the raw
        features, which lets an input pipeline pay for string lookups once instead of
        in every training step (`tfmtl.data.dataset` does). List features stay raw.

        Example:

        ```python
        encoder.preprocess(spec.input_arrays(df))   # {"embedding_4d/ids": ..., "numeric/values": ...}
        ```
        """
        out: dict[str, tf.Tensor] = {}
        for layer in self.field_embeddings:
            if layer.has_fixed_fields:
                out[layer.ids_key] = layer.lookup_ids(inputs)
            for name in layer.list_feature_names:
                out[name] = tf.convert_to_tensor(inputs[name])
        if self.numeric_encoder is not None:
            out[self.numeric_encoder.values_key] = self.numeric_encoder(inputs)
        return out

    def is_preprocessed(self, inputs: Mapping[str, Any]) -> bool:
        """Whether `inputs` is the output of `preprocess` rather than raw features."""
        keys = [layer.ids_key for layer in self.field_embeddings if layer.has_fixed_fields]
        if self.numeric_encoder is not None:
            keys.append(self.numeric_encoder.values_key)
        return bool(keys) and all(key in inputs for key in keys)

    def embed_fields(self, inputs: Mapping[str, tf.Tensor]) -> list[tf.Tensor]:
        """Returns the field embeddings, one `(batch, fields, dim)` tensor per table."""
        return [layer(inputs) for layer in self.field_embeddings]

    def call(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        parts = [tf.reshape(fields, [-1, fields.shape[1] * fields.shape[2]]) for fields in self.embed_fields(inputs)]
        if self.numeric_encoder:
            parts.append(self.numeric_encoder(inputs))
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (None, self.output_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(features=self.spec.get_config(), fused=self.fused)
        return config
