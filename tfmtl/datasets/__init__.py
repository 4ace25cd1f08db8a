"""Real data sets with their multi-task set-ups."""

import functools

from tfmtl.datasets.census_income import census_income
from tfmtl.datasets.synthetic_correlated import synthetic_correlated
from tfmtl.datasets.synthetic_funnel import funnel_columns, synthetic_funnel

# Command-line names of the data sets; each returns (train, test) and has default tasks.
DATASETS = {
    "census-income": census_income,
    # What a log records: features and observed steps, without the ground truth.
    "synthetic-funnel": functools.partial(synthetic_funnel, ground_truth=False),
}
# (name, kind[, label[, parent[, conditional_name]]]) per task.
DEFAULT_TASKS = {
    "census-income": [("income", "binary"), ("marital", "binary")],
    "synthetic-funnel": [("ctr", "binary", "click"), ("ctcvr", "binary", "conversion", "ctr", "cvr")],
}

__all__ = ["DATASETS", "DEFAULT_TASKS", "census_income", "funnel_columns", "synthetic_correlated", "synthetic_funnel"]
