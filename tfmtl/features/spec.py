"""FeatureSpec: which raw columns a model reads and how each is preprocessed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import pandas as pd

from tfmtl.errors import InputError
from tfmtl.features.feature import (
    INT64,
    STRING,
    CategoricalFeature,
    Feature,
    HashedFeature,
    ListFeature,
    NumericFeature,
    categorical_values,
    feature_from_config,
    feature_to_config,
)


@keras.saving.register_keras_serializable(package="tfmtl")
class FeatureSpec:
    """An ordered set of raw input features with their preprocessing statistics.

    Build one with `FeatureSpec.infer(train_df)`; the model turns it into Keras
    preprocessing and embedding layers, so a saved model takes raw values.

    Example:

    ```python
    import pandas as pd
    df = pd.DataFrame({"age": [25.0, 40.5, 31.0], "city": ["Oslo", "Rome", "Oslo"], "floor": [1, 3, 1]})
    spec = FeatureSpec.infer(df)
    print(spec)   # FeatureSpec(age: numeric, city: categorical[2], floor: categorical[2])
    ```
    """

    def __init__(self, features: Sequence[Feature]):
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InputError(f"features: duplicate feature names {duplicates}")
        if not features:
            raise InputError("features: a FeatureSpec needs at least one feature")
        separators = {f.separator for f in features if isinstance(f, ListFeature)}
        if len(separators) > 1:
            raise InputError(f"features: all list features must share one separator, got {sorted(separators)}")
        self.features: tuple[Feature, ...] = tuple(features)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def __getitem__(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.features)

    def __iter__(self):
        return iter(self.features)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSpec) and self.features == other.features

    def __repr__(self) -> str:
        def describe(f: Feature) -> str:
            if isinstance(f, (CategoricalFeature, ListFeature)):
                return f"{f.name}: {f.kind}[{len(f.vocabulary)}]"
            if isinstance(f, HashedFeature):
                return f"{f.name}: hashed[{f.num_bins}]"
            return f"{f.name}: numeric"

        return f"FeatureSpec({', '.join(describe(f) for f in self.features)})"

    def of_kind(self, *kinds: str) -> list[Feature]:
        return [f for f in self.features if f.kind in kinds]

    def input_arrays(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Returns the raw model inputs for a DataFrame, one array per feature."""
        self.check_columns(df)
        return {f.name: f.column_values(df[f.name]) for f in self.features}

    def check_columns(self, df: pd.DataFrame) -> None:
        """Raises `InputError` naming the feature columns that `df` lacks."""
        missing = [name for name in self.names if name not in df.columns]
        if missing:
            raise InputError(f"data is missing feature column(s) {missing}")

    def get_config(self) -> dict[str, Any]:
        return {"features": [feature_to_config(f) for f in self.features]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "FeatureSpec":
        return cls([feature_from_config(c) for c in config["features"]])

    @classmethod
    def infer(
        cls,
        df: pd.DataFrame,
        *,
        exclude: Iterable[str] = (),
        categorical: Iterable[str] = (),
        numeric: Iterable[str] = (),
        lists: Iterable[str] = (),
        embedding_dim: int = 8,
        embedding_dims: Mapping[str, int] | None = None,
        max_integer_categories: int = 20,
        hash_threshold: int = 10_000,
        hash_bins: int | None = None,
        min_frequency: int = 1,
        list_separator: str = "|",
    ) -> "FeatureSpec":
        """Infers every column's feature kind and preprocessing statistics from training data.

        Rules: strings, booleans and pandas categories are categorical; integers with at
        most `max_integer_categories` distinct values are categorical, other numbers
        numeric; columns holding Python lists are list features. A categorical with more
        than `hash_threshold` distinct values is hashed into `hash_bins` bins (default:
        twice the threshold). Name columns in `categorical`, `numeric` or `lists` to
        override the rules, and in `exclude` to leave them out (labels, weights, ids).

        Args:
            df: the training data; vocabularies and statistics come from it alone.
            exclude: columns that are not features.
            categorical: columns to treat as categorical whatever their dtype.
            numeric: columns to treat as numeric.
            lists: columns of separator-joined strings (or Python lists) to pool.
            embedding_dim: embedding size of every categorical feature.
            embedding_dims: per-feature embedding sizes that override `embedding_dim`.
            max_integer_categories: integer columns with up to this many distinct values
                are categorical.
            hash_threshold: categoricals with more distinct values are hashed.
            hash_bins: number of hash bins for hashed features.
            min_frequency: values seen fewer times in training go to the OOV bucket.
            list_separator: separator of list features' values.
        """
        if not isinstance(df, pd.DataFrame):
            raise InputError(f"df: expected a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise InputError("df: the training DataFrame is empty")
        if df.columns.has_duplicates:
            raise InputError(f"df: duplicate column names {sorted(set(df.columns[df.columns.duplicated()]))}")
        for arg, names in (("exclude", exclude), ("categorical", categorical), ("numeric", numeric), ("lists", lists)):
            if isinstance(names, str):  # a set of its characters otherwise
                raise InputError(f"{arg}: expected a list of column names, got the string {names!r}")
        exclude, categorical, numeric, lists = (set(x) for x in (exclude, categorical, numeric, lists))
        for arg, names in (("exclude", exclude), ("categorical", categorical), ("numeric", numeric), ("lists", lists)):
            unknown = sorted(names - set(df.columns))
            if unknown:
                raise InputError(f"{arg}: column(s) {unknown} are not in the data")
        clash = (categorical & numeric) | (categorical & lists) | (numeric & lists)
        if clash:
            raise InputError(f"column(s) {sorted(clash)} are named in more than one of categorical/numeric/lists")
        embedding_dims = dict(embedding_dims or {})
        hash_bins = hash_bins or 2 * hash_threshold

        features: list[Feature] = []
        for name in df.columns:
            if name in exclude:
                continue
            series = df[name]
            dim = int(embedding_dims.get(name, embedding_dim))
            kind = _infer_kind(series, categorical, numeric, lists, max_integer_categories)
            if kind == "numeric":
                features.append(_numeric_feature(series))
            elif kind == "list":
                feature = ListFeature(name, (), dim, list_separator)
                exploded = pd.Series(feature.column_values(series)).str.split(list_separator, regex=False).explode()
                exploded = exploded[exploded != ""].dropna()
                features.append(ListFeature(name, _vocabulary(exploded, min_frequency), dim, list_separator))
            else:
                dtype = INT64 if pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series) else STRING
                # Numbers with gaps (floats) declared categorical: a CSV read as text later must give the same strings.
                numbers = dtype == STRING and pd.api.types.is_numeric_dtype(series)
                values = pd.Series(categorical_values(series, dtype, numbers)).astype(str)
                if values.nunique() > hash_threshold:
                    features.append(HashedFeature(name, hash_bins, dim, dtype, numbers))
                else:
                    features.append(CategoricalFeature(name, _vocabulary(values, min_frequency), dim, dtype, numbers))
        return cls(features)


def _infer_kind(
    series: pd.Series, categorical: set[str], numeric: set[str], lists: set[str], max_integer_categories: int
) -> str:
    name = series.name
    if name in categorical:
        return "categorical"
    if name in numeric:
        return "numeric"
    if name in lists:
        return "list"
    if pd.api.types.is_bool_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_integer_dtype(series):
        return "categorical" if series.nunique() <= max_integer_categories else "numeric"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    return "list" if holds_sequences(series) else "categorical"


def holds_sequences(series: pd.Series) -> bool:
    """Whether a column's values are lists, tuples or arrays (judged by its first present value)."""
    present = series.dropna()
    return bool(len(present)) and isinstance(present.iloc[0], (list, tuple, np.ndarray))


def _numeric_feature(series: pd.Series) -> NumericFeature:
    values = NumericFeature(series.name).column_values(series).astype(np.float64)
    present = values[~np.isnan(values)]
    if present.size == 0:
        raise InputError(f"column {series.name!r}: numeric feature has no values in the training data")
    return NumericFeature(
        series.name,
        mean=float(present.mean()),
        variance=float(present.var()),
        missing_indicator=bool(present.size < values.size),
    )


def _vocabulary(values: pd.Series, min_frequency: int) -> tuple[str, ...]:
    counts = values.value_counts()
    counts = counts[counts >= min_frequency]
    # Most frequent first, ties by value, so the same data always gives the same table.
    order = sorted(zip(counts.index.astype(str), counts.to_numpy()), key=lambda kv: (-kv[1], kv[0]))
    return tuple(value for value, _ in order)
