"""MultiTaskHyperModel: a keras-tuner HyperModel over zoo models, built the way `tfmtl train` builds them."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import keras
import keras_tuner
import pandas as pd

from tfmtl.cli.recipe import DEFAULTS, merge
from tfmtl.cli.train import EVALUATION_BATCH_SIZE, evaluate_tasks, make_features, make_model, make_tasks
from tfmtl.data import dataset
from tfmtl.features import FeatureSpec
from tfmtl.tasks import Task
from tfmtl.tuning.objective import TaskObjective
from tfmtl.tuning.space import SearchSpace
from tfmtl.zoo import MultiTaskModel


class MultiTaskHyperModel(keras_tuner.HyperModel):
    """Builds and trains zoo models from a search space, reporting every task's validation metrics.

    Each set of hyperparameter values becomes a whole recipe (`recipe(hp)`) on top
    of `recipe`, the fixed part (data, tasks, feature options, epochs, seed), and
    the model is built from it with the same functions as `tfmtl train`, so the
    best recipe reruns as it was searched. `fit` trains on a DataFrame, evaluates
    on `validation_data` and returns the objective (`objective`) and every
    task's validation metrics (`val_<task>_<metric>`), which the tuner records.

    Args:
        space: the `SearchSpace`.
        train: the training rows; the feature statistics come from them.
        recipe: the fixed settings, as in a recipe (`tasks`, `drop`, `features`,
            `training`, data names); unset keys take the recipe defaults.
        objective: a `TaskObjective` (default: mean validation AUC of the binary tasks).

    Example:

    ```python
    import keras_tuner, tfmtl
    from tfmtl.tuning import MultiTaskHyperModel, SearchSpace, shipped_space
    train, test = tfmtl.datasets.census_income()
    valid = train.sample(frac=0.2, random_state=0)
    train = train.drop(index=valid.index)
    recipe = {"tasks": [{"name": "income", "kind": "binary"}, {"name": "marital", "kind": "binary"}]}
    hypermodel = MultiTaskHyperModel(SearchSpace.load(shipped_space("census-income")), train, recipe)
    tuner = keras_tuner.RandomSearch(hypermodel, objective=hypermodel.objective.keras_objective, max_trials=10)
    tuner.search(train, validation_data=valid, epochs=1)
    best = hypermodel.recipe(tuner.get_best_hyperparameters()[0])   # a recipe for `tfmtl train --recipe`
    ```
    """

    def __init__(
        self,
        space: SearchSpace,
        train: pd.DataFrame,
        recipe: Mapping[str, Any] | None = None,
        objective: TaskObjective | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.space = space
        self.base = merge(DEFAULTS, recipe or {})
        self.train = train
        self.tasks = make_tasks(self.base, train)
        self.objective = objective or TaskObjective.parse(None, self.tasks)
        self.recipe_tasks = [_task_spec(t) for t in self.tasks]

    def recipe(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """The whole recipe of these hyperparameter values (declaring any not declared yet)."""
        settings = self.space.declare(hp, [t.name for t in self.tasks])
        recipe = merge(self.base, {k: settings[k] for k in ("model", "features", "training")})
        recipe["model_args"] = settings["model_args"]
        recipe["tasks"] = copy.deepcopy(self.recipe_tasks)
        for task in recipe["tasks"]:
            if task["name"] in settings["loss_weights"]:
                task["loss_weight"] = float(settings["loss_weights"][task["name"]])
        if "tuner/epochs" in hp.values:  # Hyperband's budget for this trial
            recipe["training"]["epochs"] = int(hp.values["tuner/epochs"])
        return recipe

    @functools.lru_cache(maxsize=8)
    def _features(self, embedding_dim: int) -> FeatureSpec:
        config = merge(self.base, {"features": {"embedding_dim": embedding_dim}})
        return make_features(config, self.train, self.tasks)

    def build(self, hp: keras_tuner.HyperParameters) -> MultiTaskModel:
        recipe = self.recipe(hp)
        training = recipe["training"]
        features = self._features(int(recipe["features"]["embedding_dim"]))
        tasks = make_tasks(recipe, self.train)  # with this trial's loss weights
        keras.utils.set_random_seed(training["seed"])
        model = make_model(recipe, features, tasks)
        model.compile(
            optimizer=keras.optimizers.Adam(training["learning_rate"]),
            weighting=training["weighting"],
            steps_per_execution=training["steps_per_execution"],
        )
        return model

    def fit(
        self,
        hp: keras_tuner.HyperParameters,
        model: MultiTaskModel,
        x: pd.DataFrame,
        validation_data: pd.DataFrame,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Trains on the rows `x`, then returns the objective and every task's metrics on `validation_data`."""
        training = self.recipe(hp)["training"]
        kwargs.setdefault("epochs", training["epochs"])
        train_ds = dataset(x, model.feature_spec, model.tasks, batch_size=training["batch_size"], shuffle=True,
                           seed=training["seed"], fused=model.fused_embeddings)  # fmt: skip
        model.fit(train_ds, **kwargs)
        metrics = evaluate_tasks(model, validation_data, batch_size=max(training["batch_size"], EVALUATION_BATCH_SIZE))
        return self.objective.report(metrics)


def _task_spec(task: Task) -> dict[str, Any]:
    """A task as a recipe writes it: only what differs from the defaults (classes are read from the data)."""
    defaults = {f.name: f.default for f in dataclasses.fields(Task)}
    spec = {k: v for k, v in task.get_config().items() if k in ("name", "kind") or (k != "classes" and v != defaults[k])}
    if spec.get("label") == task.name:
        del spec["label"]
    return spec
