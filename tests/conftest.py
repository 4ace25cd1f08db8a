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
