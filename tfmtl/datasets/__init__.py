"""Real data sets with their multi-task set-ups."""

from tfmtl.datasets.census_income import census_income
from tfmtl.datasets.synthetic_correlated import synthetic_correlated

# Command-line names of the data sets; each returns (train, test) and has default tasks.
DATASETS = {"census-income": census_income}
DEFAULT_TASKS = {"census-income": [("income", "binary"), ("marital", "binary")]}

__all__ = ["DATASETS", "DEFAULT_TASKS", "census_income", "synthetic_correlated"]
