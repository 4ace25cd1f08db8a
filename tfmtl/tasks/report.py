"""Per-task views of Keras logs: nested dicts and a printable table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tfmtl.tasks.task import Task


def per_task_metrics(tasks: Sequence[Task], logs: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """Regroups flat Keras logs (`income_auc`, ...) by task: `{"income": {"auc": ...}}`.

    Example:

    ```python
    scores = model.evaluate(test_ds, return_dict=True)
    per_task_metrics(model.tasks, scores)["income"]["auc"]
    ```
    """
    grouped: dict[str, dict[str, float]] = {}
    for task in tasks:
        names = [m.name for m in task.metrics()]
        grouped[task.name] = {
            name[len(task.name) + 1 :]: float(logs[name]) for name in names if name in logs
        }
    return grouped


def format_table(metrics: Mapping[str, Mapping[str, float | None]]) -> str:
    """Formats `{task: {metric: value}}` as an aligned text table, one row per task (`-`: no value)."""
    columns = sorted({name for values in metrics.values() for name in values})
    width = max([4, *(len(task) for task in metrics)])
    lines = [f"{'task':<{width}}  " + "  ".join(f"{c:>8}" for c in columns)]
    for task, values in metrics.items():
        cells = [f"{values[c]:>8.4f}" if values.get(c) is not None else f"{'-':>8}" for c in columns]
        lines.append(f"{task:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
