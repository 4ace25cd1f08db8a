"""ESMM: the Entire Space Multi-task Model (Ma et al., SIGIR 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from tfmtl.features.spec import FeatureSpec
from tfmtl.tasks.task import Task
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class ESMM(MultiTaskModel):
    """Shared embeddings under one tower per task, with funnel steps multiplied along their chain.

    Ma et al., "Entire Space Multi-Task Model: An Effective Approach for Estimating
    Post-Click Conversion Rate", SIGIR 2018. A CVR model trained on clicked
    impressions only is biased when it scores every impression (sample selection
    bias) and starved of data; ESMM instead trains pCTR and pCTCVR = pCTR x pCVR on
    every impression, so pCVR is learned over the entire space. Declare the steps
    as tasks with parents: a child's tower gives its probability given its parent's
    step, its output (and loss) the entire-space product; the conditional
    probability is the output `conditional_name` (default `<task>_conditional`).
    The towers read the concatenated feature embeddings, shared by all tasks.
    Chains of any length work (click -> cart -> purchase), and any other zoo body
    chains tasks the same way.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s, chained with `Task(parent=...)`.
        tower_units: hidden sizes of each task's tower.
        **kwargs: `tower_activation`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    train, test = tfmtl.datasets.synthetic_funnel(num_train=20_000, num_test=5_000)
    tasks = [tfmtl.Task("ctr", "binary", label="click"),
             tfmtl.Task("ctcvr", "binary", label="conversion", parent="ctr", conditional_name="cvr")]
    features = tfmtl.FeatureSpec.infer(train, exclude=tfmtl.datasets.funnel_columns())
    model = ESMM(features, tasks)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(tfmtl.data.dataset(train, features, tasks, batch_size=512, shuffle=True), epochs=1)
    preds = model.predict(tfmtl.data.dataset(test, features, batch_size=4096))   # ctr, ctcvr, cvr
    ```
    """

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        tower_units: Sequence[int] = (128, 64),
        **kwargs: Any,
    ) -> None:
        super().__init__(features, tasks, tower_units=tower_units, **kwargs)
        self.build()

    def build_body(self, input_shape: tuple) -> tuple:
        return input_shape

    def body(self, encoded: Any, training: bool | None = None) -> Any:
        return encoded
