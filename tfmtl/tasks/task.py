"""Task: one objective of a multi-task model, with its label, loss and metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops

from tfmtl.errors import InputError
from tfmtl.tasks.binned_auc import BinnedAUC

BINARY = "binary"
REGRESSION = "regression"
MULTICLASS = "multiclass"
KINDS = (BINARY, REGRESSION, MULTICLASS)


@keras.saving.register_keras_serializable(package="tfmtl")
@dataclasses.dataclass(frozen=True)
class Task:
    """One prediction objective: its name, kind, label column, loss weight and metrics.

    The kind fixes the output and loss: `binary` (sigmoid, log loss; metrics AUC and
    log loss), `regression` (identity, squared error; RMSE and MAE) and `multiclass`
    (softmax, cross-entropy; accuracy and log loss). A missing label (NaN) leaves the
    example out of this task's loss and metrics only.

    A binary task with a `parent` is a step of a funnel that can only happen after
    its parent's (impression -> click -> conversion): its label is the entire-space
    outcome on every example (converted, whether clicked or not), its named output
    the entire-space probability, and the model also outputs its probability given
    the parent's step under the name `conditional_output` (`conditional_name`, or
    `<name>_conditional`). Chains may be of any length.

    Args:
        name: the output's name; also the label column unless `label` is given.
        kind: `"binary"`, `"regression"` or `"multiclass"`.
        label: the label column (default: `name`).
        loss_weight: weight of this task's loss under static weighting.
        sample_weight: optional column of per-example weights for this task.
        classes: the class values of a multiclass task, in output order.
        parent: the name of the binary task whose step must happen first.
        conditional_name: the output name of the probability given the parent's step.

    Example:

    ```python
    tasks = [Task("income", "binary"), Task("rating", "regression", label="stars")]
    esmm_tasks = [   # outputs ctr, ctcvr and cvr = P(conversion | click)
        Task("ctr", "binary", label="click"),
        Task("ctcvr", "binary", label="conversion", parent="ctr", conditional_name="cvr"),
    ]
    ```
    """

    name: str
    kind: str
    label: str | None = None
    loss_weight: float = 1.0
    sample_weight: str | None = None
    classes: tuple | None = None
    parent: str | None = None
    conditional_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"task name: expected a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise InputError(f"task {self.name!r}: unknown kind {self.kind!r}, expected one of {', '.join(KINDS)}")
        if self.label is None:
            object.__setattr__(self, "label", self.name)
        if self.classes is not None:
            if self.kind != MULTICLASS:
                raise InputError(f"task {self.name!r}: classes only apply to multiclass tasks")
            object.__setattr__(self, "classes", tuple(self.classes))
            if len(self.classes) < 2:
                raise InputError(f"task {self.name!r}: a multiclass task needs at least 2 classes")
        if self.loss_weight < 0:
            raise InputError(f"task {self.name!r}: loss_weight must be >= 0, got {self.loss_weight}")
        if self.parent is not None:
            if not isinstance(self.parent, str) or not self.parent or self.parent == self.name:
                raise InputError(f"task {self.name!r}: parent must be the name of another task, got {self.parent!r}")
            if self.kind != BINARY:
                raise InputError(f"task {self.name!r}: only binary tasks can have a parent, this one is {self.kind}")
        if self.conditional_name is not None:
            if self.parent is None:
                raise InputError(f"task {self.name!r}: conditional_name needs a parent task")
            if not isinstance(self.conditional_name, str) or self.conditional_name in ("", self.name):
                raise InputError(
                    f"task {self.name!r}: conditional_name must be a new output name, got {self.conditional_name!r}"
                )

    @property
    def conditional_output(self) -> str | None:
        """The output name of this task's probability given its parent's step (None without a parent)."""
        if self.parent is None:
            return None
        return self.conditional_name or f"{self.name}_conditional"

    @property
    def output_units(self) -> int:
        if self.kind != MULTICLASS:
            return 1
        if self.classes is None:
            raise InputError(
                f"task {self.name!r}: a multiclass task needs classes=[...]; "
                "Task.with_classes_from(df) takes them from the training data"
            )
        return len(self.classes)

    def with_classes_from(self, df: pd.DataFrame) -> "Task":
        """Returns this task with `classes` taken (sorted) from the label column of `df`."""
        if self.kind != MULTICLASS or self.classes is not None:
            return self
        if self.label not in df.columns:
            raise InputError(f"task {self.name!r}: label column {self.label!r} is not in the data")
        values = df[self.label].dropna().unique().tolist()
        return dataclasses.replace(self, classes=tuple(sorted(values, key=lambda v: (str(type(v)), v))))

    # ----- labels -----------------------------------------------------------------
    def label_values(self, df: pd.DataFrame) -> np.ndarray:
        """Returns this task's labels as float32, NaN where missing; raises on bad labels.

        Multiclass labels become class indices (as float, so NaN can mark a missing one).
        """
        if self.label not in df.columns:
            raise InputError(f"task {self.name!r}: label column {self.label!r} is not in the data")
        column = df[self.label]
        if self.kind == MULTICLASS:
            classes = self.classes
            if classes is None:
                self.output_units  # raises the clear error
            index = {c: i for i, c in enumerate(classes)}
            present = column.notna()
            unknown = column[present & ~column.isin(list(classes))]
            if len(unknown):
                raise InputError(
                    f"task {self.name!r}: label column {self.label!r} has value {unknown.iloc[0]!r} "
                    f"that is not one of its {len(classes)} classes"
                )
            return np.array([index[v] if p else np.nan for v, p in zip(column, present)], np.float32)
        values = pd.to_numeric(column, errors="coerce") if not pd.api.types.is_bool_dtype(column) else column
        bad = values.isna() & column.notna()
        if bad.any():
            raise InputError(
                f"task {self.name!r}: label column {self.label!r} has non-numeric value {column[bad].iloc[0]!r}"
            )
        values = values.to_numpy(dtype=np.float32, na_value=np.nan)
        if self.kind == BINARY:
            bad = ~np.isnan(values) & (values != 0) & (values != 1)
            if bad.any():
                found = sorted(set(values[bad].tolist()))[:5]
                raise InputError(
                    f"task {self.name!r}: binary labels in column {self.label!r} must be 0 or 1 (or missing), "
                    f"found {found}"
                )
        elif not np.isfinite(values[~np.isnan(values)]).all():
            raise InputError(f"task {self.name!r}: regression labels in column {self.label!r} must be finite")
        return values

    def weight_values(self, df: pd.DataFrame) -> np.ndarray:
        """Returns this task's per-example weights (ones when it has no weight column)."""
        if self.sample_weight is None:
            return np.ones(len(df), np.float32)
        if self.sample_weight not in df.columns:
            raise InputError(f"task {self.name!r}: sample_weight column {self.sample_weight!r} is not in the data")
        values = pd.to_numeric(df[self.sample_weight], errors="coerce").to_numpy(np.float32, na_value=np.nan)
        if not np.isfinite(values).all() or (values < 0).any():
            raise InputError(
                f"task {self.name!r}: sample_weight column {self.sample_weight!r} must be finite numbers >= 0"
            )
        return values

    # ----- maths ------------------------------------------------------------------
    def predictions(self, logits: Any) -> Any:
        """Maps this task's logits to its output: probability, value or class probabilities."""
        if self.kind == BINARY:
            return ops.sigmoid(logits)
        if self.kind == MULTICLASS:
            return ops.softmax(logits, axis=-1)
        return logits

    def example_losses(self, labels: Any, logits: Any) -> Any:
        """Per-example loss from logits; labels must already have no NaN."""
        if self.kind == BINARY:
            return ops.binary_crossentropy(labels, logits, from_logits=True)
        if self.kind == MULTICLASS:
            return ops.sparse_categorical_crossentropy(ops.cast(labels, "int32"), logits, from_logits=True)
        return ops.square(labels - logits)

    def metrics(self) -> list[keras.metrics.Metric]:
        """Fresh metric objects for this task, named `<task>_<metric>`."""
        name = self.name
        if self.kind == BINARY:
            # Many evenly spaced thresholds: the AUC is then within ~1e-4 of the exact
            # rank statistic, and BinnedAUC's update costs O(batch), not O(thresholds).
            return [
                BinnedAUC(num_bins=10_000, name=f"{name}_auc"),
                keras.metrics.BinaryCrossentropy(name=f"{name}_logloss"),
            ]
        if self.kind == MULTICLASS:
            return [
                keras.metrics.SparseCategoricalAccuracy(name=f"{name}_accuracy"),
                keras.metrics.SparseCategoricalCrossentropy(name=f"{name}_logloss"),
            ]
        return [
            keras.metrics.RootMeanSquaredError(name=f"{name}_rmse"),
            keras.metrics.MeanAbsoluteError(name=f"{name}_mae"),
        ]

    def get_config(self) -> dict[str, Any]:
        config = dataclasses.asdict(self)
        if self.classes is not None:
            config["classes"] = [c.item() if isinstance(c, np.generic) else c for c in self.classes]
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Task":
        return cls(**config)


def check_tasks(tasks: Sequence[Task]) -> list[Task]:
    """Validates a task list: at least one task, unique output names, sound chains; returns it as a list.

    Example:

    ```python
    check_tasks([Task("ctr", "binary"), Task("ctcvr", "binary", parent="ctr")])
    check_tasks([Task("cvr", "binary", parent="click")])   # InputError: parent 'click' is not one of the tasks
    ```
    """
    tasks = list(tasks)
    if not tasks:
        raise InputError("tasks: a multi-task model needs at least one task")
    for task in tasks:
        if not isinstance(task, Task):
            raise InputError(f"tasks: expected tfmtl.Task objects, got {type(task).__name__}")
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"tasks: duplicate task names {duplicates}")
    by_name = {t.name: t for t in tasks}
    for task in tasks:
        if task.parent is None:
            continue
        parent = by_name.get(task.parent)
        if parent is None:
            raise InputError(f"task {task.name!r}: parent {task.parent!r} is not one of the tasks {names}")
        if parent.kind != BINARY:
            raise InputError(f"task {task.name!r}: parent {parent.name!r} must be a binary task, it is {parent.kind}")
    outputs = names + [t.conditional_output for t in tasks if t.parent is not None]
    taken = sorted({n for n in outputs if outputs.count(n) > 1})
    if taken:
        raise InputError(f"tasks: output name(s) {taken} used twice; give the chained task another conditional_name")
    task_chains(tasks)  # raises on a cycle
    return tasks


def task_chains(tasks: Sequence[Task]) -> list[list[int]]:
    """For each task, the indices of the tasks along its chain: its root first, itself last.

    A task without a parent is a chain of one. Parents must be among `tasks`.

    Example:

    ```python
    tasks = [Task("click", "binary"), Task("cart", "binary", parent="click"),
             Task("purchase", "binary", parent="cart")]
    task_chains(tasks)   # [[0], [0, 1], [0, 1, 2]]
    ```
    """
    index = {t.name: i for i, t in enumerate(tasks)}
    chains = []
    for i in range(len(tasks)):
        chain = [i]
        while tasks[chain[0]].parent is not None:
            parent = index[tasks[chain[0]].parent]
            if parent in chain:
                cycle = " -> ".join(tasks[j].name for j in [parent, *chain])
                raise InputError(f"tasks: the parents form a cycle {cycle}")
            chain.insert(0, parent)
        chains.append(chain)
    return chains
