"""FieldEmbedding: raw categorical values of many features to vectors with one fused table."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from tfmtl.features.feature import (
    INT64,
    CategoricalFeature,
    Feature,
    HashedFeature,
    ListFeature,
    feature_from_config,
    feature_to_config,
)

# A key is "<field position><_FIELD_MARK><value>", so equal values of different
# features are different rows; "<field position><_OOV_MARK>" is that field's OOV row.
_FIELD_MARK = "\x1f"
_OOV_MARK = "\x1e"
# A decimal number as text: what `tf.strings.to_number` and pandas both read as one.
_NUMBER = r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*"


@keras.saving.register_keras_serializable(package="tfmtl")
class FieldEmbedding(keras.layers.Layer):
    """Embeds the raw values of several categorical, hashed and list features at once.

    All features share one embedding table with per-feature row ranges: a single
    `StringLookup` maps prefixed keys to rows (each feature with its own
    out-of-vocabulary row), one `Hashing` layer serves all hashed features, and one
    gather reads the table. List features are mean-pooled over their values.

    Args:
        features: the categorical, hashed and list features; they must share
            `embedding_dim`.
        embeddings_initializer: initializer of the table.
        embeddings_regularizer: optional regularizer of the table.

    Call arguments:
        inputs: dict from feature name to a batch of raw values, shape `(batch,)`.

    Returns:
        Field embeddings of shape `(batch, num_features, embedding_dim)`, fields in
        the order categorical and hashed features, then list features.

    Example:

    ```python
    import numpy as np
    from tfmtl.features import CategoricalFeature
    layer = FieldEmbedding([CategoricalFeature("city", ("Oslo", "Rome"), 4)])
    layer({"city": np.array(["Rome", "Paris"])}).shape   # (2, 1, 4)
    ```
    """

    def __init__(
        self,
        features: Sequence[Feature | Mapping[str, Any]],
        embeddings_initializer: str | keras.initializers.Initializer = "uniform",
        embeddings_regularizer: str | keras.regularizers.Regularizer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        features = [f if not isinstance(f, Mapping) else feature_from_config(f) for f in features]
        dims = {f.embedding_dim for f in features}
        if len(dims) != 1:
            raise ValueError(f"features: a FieldEmbedding needs one embedding_dim, got {sorted(dims)}")
        self.features = features
        self.embedding_dim = dims.pop()
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)

        # Vocabulary features first, then hashed features, then list features; within the
        # first two, string ones before integer ones, the order in which `_stacked_keys`
        # converts each dtype once and so the order of the id columns.
        def strings_first(kind: type) -> list[Feature]:
            return sorted((f for f in features if isinstance(f, kind)), key=lambda f: f.dtype == INT64)

        self._vocab_features = strings_first(CategoricalFeature)
        self._hashed_features = strings_first(HashedFeature)
        self._list_features = [f for f in features if isinstance(f, ListFeature)]
        self._separator = self._list_features[0].separator if self._list_features else "|"

        looked_up = self._vocab_features + self._list_features
        tokens: list[str] = []
        for position, feature in enumerate(looked_up):
            tokens.append(f"{position}{_OOV_MARK}")
            tokens.extend(f"{position}{_FIELD_MARK}{value}" for value in feature.vocabulary)
        self._lookup_prefixes = [f"{position}{_FIELD_MARK}" for position in range(len(looked_up))]
        # StringLookup reserves index 0 for keys it does not know; the OOV token of
        # field p sits at index 1 + its position in `tokens`.
        oov_rows, row = [], 1
        for feature in looked_up:
            oov_rows.append(row)
            row += 1 + len(feature.vocabulary)
        self._oov_rows = oov_rows
        self.lookup = keras.layers.StringLookup(
            vocabulary=tokens or ["\x00"], num_oov_indices=1, mask_token=None, name="lookup"
        )
        lookup_rows = 1 + max(len(tokens), 1)

        self._hash_prefixes = [f"{i}{_FIELD_MARK}" for i in range(len(self._hashed_features))]
        hash_bins = sum(f.num_bins for f in self._hashed_features)
        # Hashed features share one hashed row range of the summed size: keys are
        # prefixed, so each feature spreads over all of it (feature hashing).
        self.hashing = keras.layers.Hashing(num_bins=max(hash_bins, 1), name="hashing") if hash_bins else None
        self._hash_offset = lookup_rows
        self.num_rows = lookup_rows + hash_bins
        from tfmtl.distribute.embedding import embedding_table  # here: tfmtl.distribute imports tfmtl.data

        # keras.layers.Embedding, or a SparseCore table on TPUs (not with list features:
        # SparseCore needs a fixed number of ids per example).
        self.embedding = embedding_table(
            self.num_rows,
            self.embedding_dim,
            ids_per_example=None if self._list_features else len(self._vocab_features) + len(self._hashed_features),
            embeddings_initializer=self.embeddings_initializer,
            embeddings_regularizer=self.embeddings_regularizer,
            name="table",
        )

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self._vocab_features + self._hashed_features + self._list_features]

    def build(self, input_shape: Any = None) -> None:
        # The lookup tables exist from the vocabulary; marking every sublayer built
        # lets Keras skip its symbolic build from a (possibly distributed) data batch.
        self.lookup.build((None,))
        if self.hashing is not None:
            self.hashing.build((None,))
        self.embedding.build((None,))
        super().build(input_shape)

    def _stacked_keys(self, inputs: Mapping[str, tf.Tensor], features: list[Feature], prefixes: list[str]) -> tf.Tensor:
        columns = []
        strings = [self._string_values(inputs[f.name], f) for f in features if f.dtype != INT64]
        if strings:
            columns.append(tf.stack(strings, axis=1))
        integers = [tf.reshape(tf.cast(inputs[f.name], tf.int64), [-1]) for f in features if f.dtype == INT64]
        if integers:
            columns.append(tf.strings.as_string(tf.stack(integers, axis=1)))
        values = columns[0] if len(columns) == 1 else tf.concat(columns, axis=1)
        return tf.add(tf.constant(prefixes), values)

    def _string_values(self, values: tf.Tensor, feature: Feature) -> tf.Tensor:
        """A string feature's values, `(batch,)`; numbers written as `categorical_values` writes them.

        A feature whose categories were numbers (`numbers=True`) must find `"4"`, `" 4"`
        and `"4.0"` under its category `"4.0"` here too, where serving sends raw text.
        """
        values = tf.reshape(values, [-1])
        if not feature.numbers:
            return values
        is_number = tf.strings.regex_full_match(values, _NUMBER)
        x = tf.strings.to_number(tf.where(is_number, tf.strings.strip(values), "0"), tf.float64) + 0.0
        if isinstance(feature, CategoricalFeature):
            return _vocabulary_number_text(values, is_number, x, feature.vocabulary)
        # Hashed: no vocabulary to match, so one spelling per number, "4.0" for whole numbers as
        # in training data, 17 significant digits (enough for any float64) for the others.
        whole = is_number & (tf.abs(x) < 1e15) & tf.equal(x, tf.round(x))
        whole_text = tf.strings.as_string(tf.cast(tf.where(whole, x, 0.0), tf.int64)) + ".0"
        other_text = tf.strings.as_string(x, precision=16, scientific=True)
        return tf.where(whole, whole_text, tf.where(is_number, other_text, values))

    @property
    def ids_key(self) -> str:
        """The key under which `lookup_ids` results are passed instead of raw values."""
        return f"{self.name}/ids"

    @property
    def list_feature_names(self) -> list[str]:
        return [f.name for f in self._list_features]

    @property
    def has_fixed_fields(self) -> bool:
        return bool(self._vocab_features or self._hashed_features)

    def lookup_ids(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Table rows of the single-valued (vocabulary and hashed) features, `(batch, fields)` int32.

        This is all the preprocessing of those features: an input pipeline can run
        it once and pass the result under `ids_key` instead of the raw values.
        """
        rows = []
        if self._vocab_features:
            keys = self._stacked_keys(inputs, self._vocab_features, self._lookup_prefixes[: len(self._vocab_features)])
            ids = tf.cast(self.lookup(keys), tf.int32)
            oov = tf.constant(self._oov_rows[: len(self._vocab_features)], tf.int32)
            rows.append(tf.where(ids == 0, oov, ids))
        if self._hashed_features:
            keys = self._stacked_keys(inputs, self._hashed_features, self._hash_prefixes)
            rows.append(tf.cast(self.hashing(keys), tf.int32) + self._hash_offset)
        return tf.concat(rows, axis=1) if len(rows) > 1 else rows[0]

    def ids(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Table rows of the single-valued features, from raw `inputs` or their preprocessed ids."""
        return inputs[self.ids_key] if self.ids_key in inputs else self.lookup_ids(inputs)

    def call(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        fields = []
        if self.has_fixed_fields:
            fields.append(self.embedding(self.ids(inputs)))
        if self._list_features:
            fields.append(self._pooled_lists(inputs))
        return fields[0] if len(fields) == 1 else tf.concat(fields, axis=1)

    def _pooled_lists(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        num_lists = len(self._list_features)
        joined = tf.stack([tf.reshape(inputs[f.name], [-1]) for f in self._list_features], axis=1)
        batch_size = tf.shape(joined)[0]
        values = tf.strings.split(joined, sep=self._separator)  # (batch, lists, None)
        cell = values.values.value_rowids()  # which (example, list) cell each value is in
        tokens = values.flat_values
        present = tokens != ""
        tokens, cell = tf.boolean_mask(tokens, present), tf.boolean_mask(cell, present)
        field = tf.cast(cell % num_lists, tf.int32)
        first = len(self._vocab_features)
        prefixes = tf.constant(self._lookup_prefixes[first:])
        ids = tf.cast(self.lookup(tf.gather(prefixes, field) + tokens), tf.int32)
        ids = tf.where(ids == 0, tf.gather(tf.constant(self._oov_rows[first:], tf.int32), field), ids)
        pooled = tf.math.unsorted_segment_mean(self.embedding(ids), cell, batch_size * num_lists)
        return tf.reshape(pooled, [batch_size, num_lists, self.embedding_dim])

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (None, len(self.features), self.embedding_dim)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            features=[feature_to_config(f) for f in self.features],
            embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
            embeddings_regularizer=keras.regularizers.serialize(self.embeddings_regularizer),
        )
        return config


def _vocabulary_number_text(
    values: tf.Tensor, is_number: tf.Tensor, x: tf.Tensor, vocabulary: Sequence[str]
) -> tf.Tensor:
    """`values` with each number replaced by the vocabulary entry of the same number, if there is one.

    Vocabulary entries of a number-coded feature are Python's `str(float)`; matching
    the parsed number against them, rather than formatting it in the graph, is exact.
    """
    numbers = sorted((float(v), v) for v in vocabulary if re.fullmatch(_NUMBER, v) and math.isfinite(float(v)))
    if not numbers:
        return values
    keys = tf.constant([key for key, _ in numbers], tf.float64)
    texts = tf.constant([text for _, text in numbers])
    at = tf.minimum(tf.searchsorted(keys, x), len(numbers) - 1)
    found = is_number & tf.equal(tf.gather(keys, at), x)
    return tf.where(found, tf.gather(texts, at), values)
