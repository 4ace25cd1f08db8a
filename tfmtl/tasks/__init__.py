"""Tasks: what each output predicts, with its label, loss and metrics."""

from tfmtl.tasks.task import BINARY, KINDS, MULTICLASS, REGRESSION, Task, check_tasks, task_chains

__all__ = ["BINARY", "KINDS", "MULTICLASS", "REGRESSION", "Task", "check_tasks", "task_chains"]
