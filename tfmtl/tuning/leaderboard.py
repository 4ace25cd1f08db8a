"""The leaderboard: every finished trial with its objective, per-task metrics, front and hyperparameters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from keras_tuner.engine import trial as trial_module

from tfmtl.tasks import Task
from tfmtl.tuning.objective import NAME, TaskObjective, trial_metrics, validation_key
from tfmtl.tuning.pareto import pareto_front


def leaderboard(trials: Iterable[Any], tasks: Sequence[Task], objective: TaskObjective) -> pd.DataFrame:
    """One row per completed keras-tuner trial, best objective first.

    Columns: `trial`, `objective`, every `val_<task>_<metric>`, `pareto` (no other
    trial is as good on every task's front metric and better on one), then the
    hyperparameter values.

    Example:

    ```python
    table = leaderboard(tuner.oracle.trials.values(), hypermodel.tasks, hypermodel.objective)
    ```
    """
    rows, types = [], {}
    for trial in trials:
        if trial.status != trial_module.TrialStatus.COMPLETED:
            continue
        metrics = trial_metrics(trial)
        values = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        for name, value in values.items():
            types.setdefault(name, set()).add(type(value))
        task_metrics = {k: v for k, v in sorted(metrics.items()) if k.startswith("val_")}
        rows.append({"trial": trial.trial_id, NAME: metrics.get(NAME), **task_metrics, "pareto": False, **values})
    columns, directions = front_columns(tasks, objective)
    if not rows:
        return pd.DataFrame(columns=["trial", NAME, *columns, "pareto"])
    table = pd.DataFrame(rows)
    integers = [name for name, kinds in types.items() if kinds == {int}]
    table["pareto"] = pareto_front(table[columns].to_numpy(dtype="float64"), directions)
    for column in integers:  # integers stay integers where other trials leave them unset
        table[column] = table[column].astype("Int64")
    return table.sort_values(NAME, ascending=objective.direction == "min", kind="stable").reset_index(drop=True)


def front_columns(tasks: Sequence[Task], objective: TaskObjective) -> tuple[list[str], list[str]]:
    """The leaderboard columns the Pareto front is over, and their directions."""
    front = objective.front_metrics(tasks)
    return [validation_key(task, metric) for task, metric, _ in front], [direction for _, _, direction in front]


def format_leaderboard(table: pd.DataFrame, top: int = 10) -> str:
    """The first `top` rows as aligned text, numbers to 4 decimals.

    Example:

    ```python
    import pandas as pd
    table = pd.DataFrame({"trial": ["0", "1"], "objective": [0.9675, 0.9700], "val_income_auc": [0.941, 0.948],
                          "val_marital_auc": [0.994, 0.992], "pareto": [True, True]})   # as leaderboard() gives
    print(format_leaderboard(table))
    ```
    """
    shown = table.head(top).copy()
    shown["pareto"] = shown["pareto"].map({True: "*", False: ""})
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-")
