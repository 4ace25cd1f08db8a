"""Tasks: what each output predicts, with its label, loss and metrics."""

from tfmtl.tasks.binned_auc import BinnedAUC
from tfmtl.tasks.counterfactual import doubly_robust_risk, inverse_propensity_risk
from tfmtl.tasks.task import BINARY, KINDS, MULTICLASS, REGRESSION, Task, check_tasks, task_chains

__all__ = [
    "BINARY",
    "BinnedAUC",
    "KINDS",
    "MULTICLASS",
    "REGRESSION",
    "Task",
    "check_tasks",
    "doubly_robust_risk",
    "inverse_propensity_risk",
    "task_chains",
]
