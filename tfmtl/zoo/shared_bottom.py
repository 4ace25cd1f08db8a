"""SharedBottom: one shared network under all task towers (Caruana, 1997)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.mlp import MLP
from tfmtl.tasks.task import Task
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class SharedBottom(MultiTaskModel):
    """Hard parameter sharing: all tasks read the output of one shared MLP.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s.
        bottom_units: hidden sizes of the shared MLP.
        bottom_activation: its activation.
        **kwargs: `tower_units`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    train, test = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    model = SharedBottom(features, tasks, bottom_units=[128], tower_units=[32])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ```
    """

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        bottom_units: Sequence[int] = (128,),
        bottom_activation: str = "relu",
        **kwargs: Any,
    ) -> None:
        super().__init__(features, tasks, **kwargs)
        self.bottom_units = [int(u) for u in bottom_units]
        self.bottom_activation = bottom_activation
        self.bottom = MLP(self.bottom_units, activation=bottom_activation, dropout=self.dropout, name="bottom")
        self.build()

    def build_body(self, input_shape: tuple) -> tuple:
        self.bottom.build(input_shape)
        return self.bottom.compute_output_shape(input_shape)

    def body(self, encoded: Any, training: bool | None = None) -> Any:
        return self.bottom(encoded, training=training)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(bottom_units=self.bottom_units, bottom_activation=self.bottom_activation)
        return config
