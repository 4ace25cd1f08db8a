"""TaskObjective: one number to tune from several tasks' validation metrics."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner

from tfmtl.errors import InputError
from tfmtl.tasks.task import BINARY, MULTICLASS, Task

# Which way each task metric improves.
DIRECTIONS = {"auc": "max", "accuracy": "max", "logloss": "min", "rmse": "min", "mae": "min"}
# The metric a task is judged on when the objective does not name one for it.
PRIMARY_METRIC = {BINARY: "auc", MULTICLASS: "accuracy"}
NAME = "objective"


def metric_names(task: Task) -> list[str]:
    """The metrics a task reports, without the task prefix: `["auc", "logloss"]`."""
    return [m.name[len(task.name) + 1 :] for m in task.metrics()]


def primary_metric(task: Task) -> str:
    return PRIMARY_METRIC.get(task.kind, "rmse")


def validation_key(task: str, metric: str) -> str:
    """How a trial records a task's validation metric: `val_income_auc`."""
    return f"val_{task}_{metric}"


@dataclasses.dataclass(frozen=True)
class TaskObjective:
    """A weighted mean of per-task validation metrics, with the right direction for each.

    `terms` are `(task, metric, weight)`. When every metric improves the same way,
    the value is their weighted mean and improves that way (a mean AUC is
    maximised, a mean log loss minimised); otherwise metrics that improve
    downwards enter negated and the value is maximised.

    Example:

    ```python
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    objective = TaskObjective.parse(None, tasks)            # mean validation AUC
    objective = TaskObjective.parse("income:auc=2,marital:auc", tasks)
    objective.value({"income": {"auc": 0.9}, "marital": {"auc": 0.6}})   # 0.8
    ```
    """

    terms: tuple[tuple[str, str, float], ...]

    @classmethod
    def parse(cls, text: str | None, tasks: Sequence[Task]) -> "TaskObjective":
        """Reads `--objective`: `METRIC` (mean over the tasks that report it) or `TASK:METRIC[=WEIGHT],...`.

        The default is the mean AUC over the binary tasks.
        """
        text = (text or "auc").strip()
        by_name = {t.name: t for t in tasks}
        terms = []
        for part in text.split(","):
            item, _, weight_text = part.strip().partition("=")
            task_name, _, metric = item.rpartition(":")
            if metric not in DIRECTIONS:
                raise InputError(f"--objective: unknown metric {metric!r} in {part.strip()!r}, expected one of {', '.join(DIRECTIONS)}")
            try:
                weight = float(weight_text) if weight_text else 1.0
            except ValueError:
                raise InputError(f"--objective: weight {weight_text!r} of {item!r} is not a number") from None
            if not (weight > 0 and math.isfinite(weight)):
                raise InputError(f"--objective: weight of {item!r} must be a positive number, got {weight_text}")
            if not task_name:
                names = [t.name for t in tasks if metric in metric_names(t)]
                if not names:
                    raise InputError(f"--objective: no task reports {metric!r}; name one, e.g. {tasks[0].name}:{primary_metric(tasks[0])}")
                terms += [(name, metric, weight) for name in names]
                continue
            if task_name not in by_name:
                raise InputError(f"--objective: unknown task {task_name!r}, expected one of {', '.join(by_name)}")
            if metric not in metric_names(by_name[task_name]):
                raise InputError(f"--objective: task {task_name!r} reports {', '.join(metric_names(by_name[task_name]))}, not {metric!r}")
            terms.append((task_name, metric, weight))
        return cls(tuple(terms))

    @property
    def direction(self) -> str:
        directions = {DIRECTIONS[metric] for _, metric, _ in self.terms}
        return directions.pop() if len(directions) == 1 else "max"

    @property
    def keras_objective(self) -> keras_tuner.Objective:
        """The keras-tuner objective: the value reported as `objective`, and its direction."""
        return keras_tuner.Objective(NAME, self.direction)

    def describe(self) -> str:
        weights = {w for _, _, w in self.terms}
        parts = [f"{task}:{metric}" + (f"={w:g}" if len(weights) > 1 else "") for task, metric, w in self.terms]
        return f"{'mean of ' if len(parts) > 1 else ''}{', '.join(parts)} ({self.direction})"

    def value(self, metrics: Mapping[str, Mapping[str, float]]) -> float:
        """The objective of per-task metrics `{task: {metric: value}}`."""
        sign = {"max": 1.0, "min": -1.0}
        mixed = len({DIRECTIONS[m] for _, m, _ in self.terms}) > 1
        total = sum(w for _, _, w in self.terms)
        unmeasured = sorted({task for task, metric, _ in self.terms if metrics[task][metric] is None})
        if unmeasured:
            raise InputError(f"objective: the validation rows have no labels of task(s) {unmeasured}")
        return sum(
            w * metrics[task][metric] * (sign[DIRECTIONS[metric]] if mixed else 1.0) for task, metric, w in self.terms
        ) / total

    def report(self, metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """What a trial records: the objective and every task's validation metrics (`val_income_auc`, ...)."""
        flat = {
            validation_key(task, name): float(v)
            for task, values in metrics.items()
            for name, v in values.items()
            if v is not None
        }
        return {NAME: float(self.value(metrics)), **flat}

    def front_metrics(self, tasks: Sequence[Task]) -> list[tuple[str, str, str]]:
        """Per task, the metric its Pareto front is drawn on: the objective's, else the task's primary one.

        Returns `(task, metric, direction)`.
        """
        named = {task: metric for task, metric, _ in self.terms}
        return [
            (t.name, named.get(t.name, primary_metric(t)), DIRECTIONS[named.get(t.name, primary_metric(t))]) for t in tasks
        ]


def trial_metrics(trial: Any) -> dict[str, float]:
    """The last value of every metric a keras-tuner trial recorded."""
    return {name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics}
