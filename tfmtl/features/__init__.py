"""Raw input features: their kinds, and the FeatureSpec that infers them from data."""

from tfmtl.features.feature import CategoricalFeature, HashedFeature, ListFeature, NumericFeature
from tfmtl.features.spec import FeatureSpec

__all__ = ["CategoricalFeature", "FeatureSpec", "HashedFeature", "ListFeature", "NumericFeature"]
