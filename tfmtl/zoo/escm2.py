"""ESCM²: the Entire Space Counterfactual Multi-task Model (Wang et al., SIGIR 2022)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from tfmtl.errors import InputError
from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.task_towers import TaskTowers
from tfmtl.tasks.counterfactual import doubly_robust_risk, inverse_propensity_risk
from tfmtl.tasks.task import Task
from tfmtl.zoo.esmm import ESMM
from tfmtl.zoo.multi_task_model import MultiTaskModel

COUNTERFACTUAL_RISKS = ("ips", "dr")


@keras.saving.register_keras_serializable(package="tfmtl")
class ESCM2(ESMM):
    """ESMM whose conditional steps also learn a counterfactual risk: CVR debiased over the entire space.

    Wang et al., "ESCM²: Entire Space Counterfactual Multi-Task Model for
    Post-Click Conversion Rate Estimation", SIGIR 2022. ESMM learns pCVR only
    through pCTCVR = pCTR x pCVR, which leaves pCVR biased (the paper's
    "inherent estimation bias") and free to ignore that a conversion needs a
    click. ESCM² adds, for every chained task, a counterfactual risk of its
    conditional probability over all impressions: the clicked examples' CVR log
    loss weighted by the inverse of pCTR (`"ips"`), or the doubly robust risk
    with an imputation tower per chained task (`"dr"`, see
    `tfmtl.tasks.doubly_robust_risk`; the towers run in training and evaluation
    only, not in `predict` or serving). A chained task's loss is its entire-space
    log loss plus `counterfactual_weight` times that risk, so every weighting
    strategy sees it as part of the task. Chains of any length work: the
    propensity of a step is its parent's entire-space probability. Without
    chained tasks there is no risk to add, and the model is ESMM's.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s, chained with `Task(parent=...)`.
        tower_units: hidden sizes of each task's tower (and each imputation tower).
        counterfactual: `"ips"` (inverse propensity) or `"dr"` (doubly robust).
        counterfactual_weight: weight of the counterfactual risk in the chained task's loss.
        min_propensity: floor of the propensity, which bounds the inverse weights.
        **kwargs: `tower_activation`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    train, _ = tfmtl.datasets.synthetic_funnel(num_train=20_000, num_test=1_000)
    tasks = [tfmtl.Task("ctr", "binary", label="click"),
             tfmtl.Task("ctcvr", "binary", label="conversion", parent="ctr", conditional_name="cvr")]
    model = ESCM2(tfmtl.FeatureSpec.infer(train, exclude=tfmtl.datasets.funnel_columns()), tasks,
                  counterfactual="dr", counterfactual_weight=0.1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(tfmtl.data.dataset(train, model.feature_spec, tasks, batch_size=512, shuffle=True), epochs=1)
    ```
    """

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        tower_units: Sequence[int] = (128, 64),
        counterfactual: str = "ips",
        counterfactual_weight: float = 0.1,
        min_propensity: float = 0.01,
        **kwargs: Any,
    ) -> None:
        # ESMM's constructor builds the model; the imputation towers must exist first.
        MultiTaskModel.__init__(self, features, tasks, tower_units=tower_units, **kwargs)
        if counterfactual not in COUNTERFACTUAL_RISKS:
            expected = ", ".join(COUNTERFACTUAL_RISKS)
            raise InputError(f"counterfactual: expected one of {expected}, got {counterfactual!r}")
        if counterfactual_weight < 0:
            raise InputError(f"counterfactual_weight: expected >= 0, got {counterfactual_weight}")
        if not 0 < min_propensity <= 1:
            raise InputError(f"min_propensity: expected a value in (0, 1], got {min_propensity}")
        index = {task.name: i for i, task in enumerate(self.tasks)}
        self.links = [(index[task.parent], i) for i, task in enumerate(self.tasks) if task.parent is not None]
        self.counterfactual = counterfactual
        self.counterfactual_weight = counterfactual_weight
        self.min_propensity = min_propensity
        self.imputation = None
        if counterfactual == "dr" and self.links:
            self.imputation = TaskTowers(
                len(self.links),
                self.tower_units,
                output_units=self.towers.output_units,
                activation=self.tower_activation,
                dropout=self.dropout,
                name="imputation",
            )
        self.build()

    def build_body(self, input_shape: tuple) -> tuple:
        if self.imputation is not None:
            self.imputation.build(input_shape)
        return input_shape

    def auxiliary_logits(self, representations: Any, training: bool | None = None) -> Any:
        if self.imputation is None:
            return None
        return self.imputation(representations, training=training)[:, :, 0]

    def _task_losses(self, labelled: list, logits: list, steps: list | None = None) -> Any:
        shares = super()._task_losses(labelled, logits)
        if steps is None or self.counterfactual_weight == 0:
            return shares
        risks = [0.0] * len(self.tasks)
        for k, (parent, child) in enumerate(self.links):
            # The parent's label says which rows reached the child; its sample weights are the parent's own.
            reached, parent_present = labelled[parent].label, labelled[parent].present
            label, weight, count, _ = labelled[child]
            propensity = ops.sigmoid(logits[parent])
            if self.imputation is None:
                terms = inverse_propensity_risk(label, steps[child], reached, propensity, self.min_propensity)
            else:
                imputed = steps[len(self.tasks) + k]
                terms = doubly_robust_risk(label, steps[child], imputed, reached, propensity, self.min_propensity)
            risk = ops.sum(weight * parent_present * terms) / ops.maximum(count, 1.0)
            risks[child] = self.counterfactual_weight * risk  # a task has one parent, so one link
        return shares + ops.stack(risks)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            counterfactual=self.counterfactual,
            counterfactual_weight=self.counterfactual_weight,
            min_propensity=self.min_propensity,
        )
        return config
