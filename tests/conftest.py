"""Shared fixtures: small slices of the bundled Census-Income data."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

import tfmtl  # noqa: E402

TRAIN_ROWS = 4000
TEST_ROWS = 2000


@pytest.fixture(scope="session")
def census_full():
    return tfmtl.datasets.census_income()


@pytest.fixture(scope="session")
def census(census_full):
    """A few thousand rows of the bundled train and test files."""
    train, test = census_full
    return train.head(TRAIN_ROWS).reset_index(drop=True), test.head(TEST_ROWS).reset_index(drop=True)


@pytest.fixture(scope="session")
def census_tasks():
    return [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]


@pytest.fixture(scope="session")
def census_spec(census):
    return tfmtl.FeatureSpec.infer(census[0], exclude=["income", "marital"])


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture
def fit_beats_constant(census, census_spec, census_tasks):
    """Trains a model for 3 epochs on the slice and checks it beats the constant prior on every task."""
    import numpy as np

    from tfmtl.data import dataset

    def check(model: keras.Model) -> dict[str, float]:
        train, test = census
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        batches = dataset(train, census_spec, census_tasks, batch_size=256, shuffle=True, seed=0)
        model.fit(batches, epochs=3, verbose=0)
        scores = model.evaluate(dataset(test, census_spec, census_tasks, batch_size=4096), return_dict=True, verbose=0)
        for task in ("income", "marital"):
            prior = train[task].mean()
            constant = -np.mean(test[task] * np.log(prior) + (1 - test[task]) * np.log(1 - prior))
            assert scores[f"{task}_logloss"] < 0.8 * constant, (task, scores)
        assert scores["income_auc"] > 0.85 and scores["marital_auc"] > 0.95, scores
        return scores

    return check
