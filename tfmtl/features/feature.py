"""The kinds of raw input feature a FeatureSpec describes.

Each feature knows its raw dtype (what a saved or served model takes as input) and
how to turn a pandas column into that raw form with a clear error for bad values.
The statistics that preprocessing needs (vocabularies, means and variances) are
computed from the training data once, by `FeatureSpec.infer`, and stored here so
that the model graph holds all preprocessing and is saved with it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tfmtl.errors import InputError

# Raw dtypes a model input can have.
STRING = "string"
INT64 = "int64"
FLOAT32 = "float32"


def _missing_to_empty(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), "")


MISSING_INT64 = int(np.iinfo(np.int64).min)  # what a missing integer category code becomes


def _integer_codes(series: pd.Series) -> np.ndarray:
    try:
        return series.to_numpy().astype(np.int64, casting="safe")
    except TypeError:
        values = pd.to_numeric(series, errors="coerce")
        if values.isna().any() or (values != np.floor(values)).any():
            bad = series[values.isna() | (values != np.floor(values))].iloc[0]
            raise InputError(f"column {series.name!r}: expected integer category codes, found {bad!r}") from None
        return values.to_numpy().astype(np.int64)


def categorical_values(series: pd.Series, dtype: str, numbers: bool = False) -> np.ndarray:
    """Returns a column as the raw categorical input: int64 codes or strings.

    Missing values of a string column become the empty string, which is a category
    of its own when the training data had it and the out-of-vocabulary bucket when not;
    missing integer codes become `MISSING_INT64`, out of vocabulary.
    With `numbers` (string categories that were numbers in training) values are
    parsed as numbers first, so that `4`, `"4"` and `"4.0"` are one category, `"4.0"`,
    whether a file was read as numbers or as text.
    """
    if dtype == INT64:
        missing = series.isna().to_numpy()
        if not missing.any():
            return _integer_codes(series)
        # A blank cell is no code of the vocabulary: the out-of-vocabulary row (or a hash bin of its own).
        codes = np.full(len(series), MISSING_INT64, np.int64)
        codes[~missing] = _integer_codes(series[~missing])
        return codes
    text = _missing_to_empty(series).astype(str)
    if numbers:
        parsed = pd.to_numeric(series, errors="coerce")  # text that is not a number stays as it is
        # + 0.0: "-0" is the category "0.0", as the serving graph reads it.
        text = text.where(parsed.isna(), (parsed.astype("float64") + 0.0).astype(str))
    return text.to_numpy(dtype=object)


@dataclasses.dataclass(frozen=True)
class CategoricalFeature:
    """A single-valued categorical feature looked up in a fixed vocabulary.

    Values outside the vocabulary share one out-of-vocabulary embedding row of
    this feature.

    Example:

    ```python
    CategoricalFeature("sex", vocabulary=("Female", "Male"), embedding_dim=8)
    ```
    """

    name: str
    vocabulary: tuple[str, ...]
    embedding_dim: int = 8
    dtype: str = STRING
    numbers: bool = False  # string categories that were numbers: see `categorical_values`
    kind: ClassVar[str] = "categorical"

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", tuple(str(v) for v in self.vocabulary))
        if self.dtype not in (STRING, INT64):
            raise InputError(f"feature {self.name!r}: dtype must be 'string' or 'int64', got {self.dtype!r}")
        if self.embedding_dim < 1:
            raise InputError(f"feature {self.name!r}: embedding_dim must be >= 1, got {self.embedding_dim}")

    def column_values(self, series: pd.Series) -> np.ndarray:
        return categorical_values(series, self.dtype, self.numbers)


@dataclasses.dataclass(frozen=True)
class HashedFeature:
    """A high-cardinality categorical feature hashed into a fixed number of bins.

    Example:

    ```python
    HashedFeature("user_id", num_bins=100_000, embedding_dim=16, dtype="int64")
    ```
    """

    name: str
    num_bins: int
    embedding_dim: int = 8
    dtype: str = STRING
    numbers: bool = False  # string categories that were numbers: see `categorical_values`
    kind: ClassVar[str] = "hashed"

    def __post_init__(self) -> None:
        if self.num_bins < 1:
            raise InputError(f"feature {self.name!r}: num_bins must be >= 1, got {self.num_bins}")
        if self.dtype not in (STRING, INT64):
            raise InputError(f"feature {self.name!r}: dtype must be 'string' or 'int64', got {self.dtype!r}")

    def column_values(self, series: pd.Series) -> np.ndarray:
        return categorical_values(series, self.dtype, self.numbers)


@dataclasses.dataclass(frozen=True)
class ListFeature:
    """A multi-valued categorical feature whose embeddings are mean-pooled.

    The raw input is one string per example with values joined by the spec's
    separator (`"Action|Comedy"`); a pandas column of Python lists is joined for you.
    An empty string is an empty list and pools to a zero vector.

    Example:

    ```python
    ListFeature("genres", vocabulary=("Action", "Comedy", "Drama"), embedding_dim=8)
    ```
    """

    name: str
    vocabulary: tuple[str, ...]
    embedding_dim: int = 8
    separator: str = "|"
    kind: ClassVar[str] = "list"
    dtype: ClassVar[str] = STRING

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", tuple(str(v) for v in self.vocabulary))

    def column_values(self, series: pd.Series) -> np.ndarray:
        def join(value: Any) -> str:
            if isinstance(value, (list, tuple, np.ndarray)):
                return self.separator.join(str(v) for v in value)
            if value is None or (isinstance(value, float) and np.isnan(value)):
                return ""
            return str(value)

        return np.array([join(v) for v in series.to_list()], dtype=object)


@dataclasses.dataclass(frozen=True)
class NumericFeature:
    """A numeric feature standardised with its training mean and variance.

    A missing value (NaN) is imputed with the training mean, i.e. 0 after
    standardisation; when the training data had missing values, the model also
    gets a 0/1 "was missing" indicator for this feature.

    Example:

    ```python
    NumericFeature("age", mean=34.5, variance=498.0)
    ```
    """

    name: str
    mean: float = 0.0
    variance: float = 1.0
    missing_indicator: bool = False
    kind: ClassVar[str] = "numeric"
    dtype: ClassVar[str] = FLOAT32

    def column_values(self, series: pd.Series) -> np.ndarray:
        if pd.api.types.is_bool_dtype(series):
            return series.to_numpy().astype(np.float32)
        values = pd.to_numeric(series, errors="coerce")
        bad = values.isna() & series.notna()
        if bad.any():
            raise InputError(f"column {series.name!r}: expected numbers, found {series[bad].iloc[0]!r}")
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, reported below
            numbers = values.to_numpy(dtype=np.float32, na_value=np.nan)
        # One infinity would make the training mean, or that row's prediction, NaN.
        infinite = np.flatnonzero(np.isinf(numbers))
        if infinite.size:
            found = series.iloc[infinite[0]]
            found = repr(found) if isinstance(found, str) else found  # numpy's repr reads np.float64(inf)
            raise InputError(f"column {series.name!r}: expected finite numbers (float32), found {found}")
        return numbers


Feature = CategoricalFeature | HashedFeature | ListFeature | NumericFeature

FEATURE_TYPES: dict[str, type] = {
    cls.kind: cls for cls in (CategoricalFeature, HashedFeature, ListFeature, NumericFeature)
}


def feature_to_config(feature: Feature) -> dict[str, Any]:
    config = dataclasses.asdict(feature)
    if "vocabulary" in config:
        config["vocabulary"] = list(config["vocabulary"])
    return {"kind": feature.kind, **config}


def feature_from_config(config: dict[str, Any]) -> Feature:
    config = dict(config)
    kind = config.pop("kind")
    if kind not in FEATURE_TYPES:
        raise InputError(f"feature {config.get('name')!r}: unknown kind {kind!r}, expected one of {sorted(FEATURE_TYPES)}")
    return FEATURE_TYPES[kind](**config)
