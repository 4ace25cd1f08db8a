"""BinnedAUC: ROC AUC kept as two histograms, so a training step only adds counts."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfmtl")
class BinnedAUC(keras.metrics.Metric):
    """The area under the ROC curve of binary predictions, from histograms of the predicted probabilities.

    It gives the value of `keras.metrics.AUC(num_thresholds=num_bins)` (ROC curve,
    trapezoidal interpolation, evenly spaced thresholds) with a cheaper update.
    Keras' AUC keeps cumulative counts per threshold, so each update runs two
    reversed cumulative sums over all thresholds and adds four threshold-long
    vectors; all Keras metrics of the reference MMoE (two such AUCs, two log
    losses) cost about 15 % of its training step here. This metric keeps, per bin,
    the weight of positive and of negative examples: an update is one segment sum,
    and the cumulative sums run only in `result()`. Predictions must be
    probabilities in [0, 1].

    Args:
        num_bins: number of evenly spaced thresholds over [0, 1] (at least 2).
        name: metric name.
        dtype: dtype of the counts.

    Example:

    ```python
    metric = BinnedAUC(num_bins=200)
    metric.update_state([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    float(metric.result())   # 0.75
    ```
    """

    def __init__(self, num_bins: int = 10_000, name: str = "auc", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        if not isinstance(num_bins, int) or num_bins < 2:
            raise ValueError(f"num_bins: expected an integer of at least 2, got {num_bins!r}")
        self.num_bins = num_bins
        # Column 0: weight of positive examples per bin; column 1: of negative ones.
        self.histogram = self.add_variable(shape=(num_bins, 2), initializer="zeros", name="histogram")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.reshape(ops.cast(y_true, self.dtype), (-1,))
        y_pred = ops.reshape(ops.cast(y_pred, self.dtype), (-1,))
        if sample_weight is None:
            weight = ops.ones_like(y_pred)
        else:
            weight = ops.reshape(ops.cast(sample_weight, self.dtype), (-1,))
        # Keras' bins: an example counts above threshold i / (num_bins - 1) for every
        # i up to its bin, so the reverse cumulative sums in `result` give its counts.
        bins = ops.cast(ops.relu(ops.ceil(y_pred * (self.num_bins - 1)) - 1), "int32")
        counts = ops.stack([y_true * weight, (1.0 - y_true) * weight], axis=1)
        self.histogram.assign_add(ops.segment_sum(counts, bins, num_segments=self.num_bins))

    def result(self) -> Any:
        above = ops.flip(ops.cumsum(ops.flip(self.histogram, axis=0), axis=0), axis=0)
        totals = above[0]
        true_positive_rate = ops.divide_no_nan(above[:, 0], totals[0])
        false_positive_rate = ops.divide_no_nan(above[:, 1], totals[1])
        heights = (true_positive_rate[:-1] + true_positive_rate[1:]) / 2.0
        return ops.sum((false_positive_rate[:-1] - false_positive_rate[1:]) * heights)

    def reset_state(self) -> None:
        self.histogram.assign(ops.zeros_like(self.histogram))

    def get_config(self) -> dict[str, Any]:
        return {"num_bins": self.num_bins, "name": self.name, "dtype": self.dtype}
