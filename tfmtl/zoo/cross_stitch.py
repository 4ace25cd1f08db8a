"""CrossStitch: one column per task, mixed by cross-stitch units (Misra et al., CVPR 2016)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.cross_stitch_unit import CrossStitchUnit
from tfmtl.layers.parallel_dense import ParallelDense
from tfmtl.tasks.task import Task
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class CrossStitch(MultiTaskModel):
    """Per-task columns whose activations are mixed after every layer by learned weights.

    Every task has its own column of dense layers (all columns of one depth are one
    `ParallelDense`); after each layer a `CrossStitchUnit` replaces each column's
    activation with a learned linear mix of all columns', so the model learns how
    much to share at every depth. Misra et al., "Cross-stitch Networks for
    Multi-task Learning", CVPR 2016.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s.
        column_units: layer sizes of each column; a cross-stitch unit follows each.
        column_activation: their activation.
        self_weight: initial weight of a column on itself in every unit.
        **kwargs: `tower_units`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    train, test = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    model = CrossStitch(features, tasks, column_units=[64, 32])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        column_units: Sequence[int] = (64, 32),
        column_activation: str = "relu",
        self_weight: float = 0.9,
        **kwargs: Any,
    ) -> None:
        super().__init__(features, tasks, **kwargs)
        self.column_units = [int(u) for u in column_units]
        self.column_activation = column_activation
        self.self_weight = self_weight
        num_tasks = len(self.tasks)
        self.columns = [
            ParallelDense(num_tasks, units, activation=column_activation, name=f"columns_{depth}")
            for depth, units in enumerate(self.column_units)
        ]
        self.stitches = [
            CrossStitchUnit(num_tasks, self_weight, name=f"cross_stitch_{depth}") for depth in range(len(self.columns))
        ]
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout else None
        self.build()

    def build_body(self, input_shape: tuple) -> tuple:
        shape = input_shape
        for column, stitch in zip(self.columns, self.stitches):
            column.build(shape)
            shape = column.compute_output_shape(shape)
            stitch.build(shape)
        return shape

    def body(self, encoded: Any, training: bool | None = None) -> Any:
        x = encoded
        for column, stitch in zip(self.columns, self.stitches):
            x = stitch(column(x))
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    # Every column feeds every task through the units that follow it, so only the towers are
    # task-specific: task_specific_layers() stays the base class's.

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            column_units=self.column_units, column_activation=self.column_activation, self_weight=self.self_weight
        )
        return config
