"""AITM: the Adaptive Information Transfer Multi-task model (Xi et al., KDD 2021)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras

from tfmtl.errors import InputError
from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.expectation_calibrator import ExpectationCalibrator
from tfmtl.layers.information_transfer import AdaptiveInformationTransfer
from tfmtl.tasks.task import Task
from tfmtl.zoo.esmm import ESMM
from tfmtl.zoo.multi_task_model import MultiTaskModel


@keras.saving.register_keras_serializable(package="tfmtl")
class AITM(ESMM):
    """Towers that pass information down the funnel, each predicting its step over the entire space.

    Xi et al., "Modeling the Sequential Dependence among Audience Multi-step
    Conversions with Multi-task Learning in Targeted Display Advertising", KDD
    2021. Like ESMM, shared embeddings under one tower per task, each chained task
    trained on its entire-space label; unlike ESMM, each tower predicts its step's
    entire-space probability itself, and what a step learned reaches the next
    step's tower through an `AdaptiveInformationTransfer` (attention over the
    transferred parent representation and the child's own). The behavioural
    expectation calibrator (`ExpectationCalibrator`) adds
    `calibrator_weight * mean(max(p_child - p_parent, 0))` per link while
    training, so a conversion is rarely predicted likelier than its click. The
    conditional output (`conditional_name`) is `min(p_child / p_parent, 1)`.

    Args:
        features: the `FeatureSpec`.
        tasks: the `Task`s, chained with `Task(parent=...)`.
        tower_units: hidden sizes of each task's tower; the last is the size the
            transfer works at (at least one layer).
        calibrator_weight: weight of the calibrator loss (0: off).
        **kwargs: `tower_activation`, `dropout`, ... of `MultiTaskModel`.

    Example:

    ```python
    import keras, tfmtl
    steps = ["click", "cart", "purchase"]
    train, test = tfmtl.datasets.synthetic_funnel(num_train=20_000, num_test=5_000, stages=steps)
    tasks = [tfmtl.Task("click", "binary"), tfmtl.Task("cart", "binary", parent="click"),
             tfmtl.Task("purchase", "binary", parent="cart")]
    features = tfmtl.FeatureSpec.infer(train, exclude=tfmtl.datasets.funnel_columns(steps))
    model = AITM(features, tasks, calibrator_weight=0.6)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # outputs: click, cart, purchase, cart_conditional, purchase_conditional
    ```
    """

    chain_product = False

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        tower_units: Sequence[int] = (128, 64),
        calibrator_weight: float = 0.6,
        **kwargs: Any,
    ) -> None:
        # ESMM's constructor builds the model; the transfer layers must exist first.
        MultiTaskModel.__init__(self, features, tasks, tower_units=tower_units, **kwargs)
        if not self.tower_units:
            raise InputError("tower_units: AITM transfers between tower layers, give at least one")
        if calibrator_weight < 0:
            raise InputError(f"calibrator_weight: expected >= 0, got {calibrator_weight}")
        self.calibrator_weight = calibrator_weight
        index = {task.name: i for i, task in enumerate(self.tasks)}
        links = [(index[task.parent], i) for i, task in enumerate(self.tasks) if task.parent is not None]
        self.transfer = (
            AdaptiveInformationTransfer(len(self.tasks), links, dropout=self.dropout, name="transfer") if links else None
        )
        self.calibrator = ExpectationCalibrator(links, calibrator_weight, name="calibrator") if links else None
        self.build()

    def build_body(self, input_shape: tuple) -> tuple:
        if self.transfer is not None:
            self.transfer.build((None, len(self.tasks), self.tower_units[-1]))
        return input_shape

    def tower_logits(self, representations: Any, training: bool | None = None) -> Any:
        hidden = self.towers.hidden_representations(representations, training=training)
        if self.transfer is not None:
            hidden = self.transfer(hidden, training=training)
        logits = self.towers.output_logits(hidden)
        if self.calibrator is not None:
            self.calibrator(logits[:, :, 0], training=training)  # adds its loss while training
        return logits

    def transfer_weights(self, inputs: Mapping[str, Any]) -> Any:
        """Each link's attention on (the child's own representation, the transferred parent's), for raw `inputs`.

        Returns `(batch, links, 2)`, rows summing to 1; links in task order of the children.
        """
        if self.transfer is None:
            raise InputError("transfer_weights: no task has a parent, so nothing is transferred")
        hidden = self.towers.hidden_representations(self.task_representations(inputs))
        return self.transfer(hidden, return_attention=True)[1]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(calibrator_weight=self.calibrator_weight)
        return config
