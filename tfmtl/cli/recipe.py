"""Recipes: a whole training configuration in one TOML or JSON file.

A recipe names the model and its arguments, the data, the tasks, the feature
options and the training settings. `tfmtl train --recipe FILE` runs one; flags
given on the command line override it. With no recipe, the built-in defaults are
the reference configuration (`zoo/census-income/mmoe.toml`).
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfmtl._package_files import package_file
from tfmtl.errors import InputError

SECTIONS = ("model", "dataset", "train_data", "test_data", "tasks", "drop", "features", "model_args", "training")

DEFAULTS: dict[str, Any] = {
    "model": "mmoe",
    "dataset": None,
    "train_data": None,
    "test_data": None,
    "tasks": [],
    "drop": [],
    "features": {"embedding_dim": 8, "categorical": [], "numeric": []},
    "model_args": {},
    "training": {
        "epochs": 2,
        "batch_size": 1024,
        "learning_rate": 1e-3,
        "seed": 42,
        "weighting": "static",
        "steps_per_execution": 16,
        "jit_compile": False,
    },
}


def shipped_recipe(model: str, dataset: str) -> Path | None:
    """The zoo's recipe for `model` on `dataset`, from the installed package or the source tree."""
    name = f"{dataset}/{model}.toml"
    installed = package_file("tfmtl.recipes", name)
    if installed is not None:
        return installed
    source_tree = Path(__file__).resolve().parents[2] / "zoo" / name
    return source_tree if source_tree.is_file() else None


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Reads a recipe file (`.toml` or `.json`); unknown keys are an error, `results` is ignored."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--recipe: file {str(path)!r} does not exist")
    try:
        if path.suffix == ".json":
            recipe = json.loads(path.read_text())
        else:
            recipe = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"--recipe: {str(path)!r} is not valid {path.suffix[1:].upper()}: {error}") from None
    recipe.pop("results", None)  # what the recipe reproduced, for readers
    unknown = sorted(set(recipe) - set(SECTIONS))
    if unknown:
        raise InputError(f"--recipe: {str(path)!r} has unknown key(s) {unknown}; expected {', '.join(SECTIONS)}")
    for section in ("features", "model_args", "training"):
        if not isinstance(recipe.get(section, {}), Mapping):
            raise InputError(f"--recipe: [{section}] must be a table")
    unknown_training = sorted(set(recipe.get("training", {})) - set(DEFAULTS["training"]))
    if unknown_training:
        raise InputError(f"--recipe: unknown [training] key(s) {unknown_training}")
    # Relative data paths are relative to the recipe file.
    for key in DATA_PATHS:
        if recipe.get(key):
            recipe[key] = absolute_data_path(recipe[key], path.parent)
    return recipe


DATA_PATHS = ("train_data", "test_data")


def absolute_data_path(value: str, base: Path) -> str:
    """A local data path made absolute from `base`; absolute paths and URLs (`gs://...`) as they are."""
    if "://" in value or Path(value).is_absolute():
        return value
    return str((base / value).resolve())


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Returns `base` with `override` applied; tables merge key by key, the rest is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve(recipe: Mapping[str, Any] | None, flags: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults, then the recipe, then command-line flags (only those that were given)."""
    if recipe is None and flags.get("dataset"):
        # A model on a bundled data set starts from the zoo's recipe for the pair.
        path = shipped_recipe(flags.get("model", DEFAULTS["model"]), flags["dataset"])
        recipe = load_recipe(path) if path else None
    config = merge(DEFAULTS, recipe or {})
    if flags.get("train_data") and not flags.get("dataset"):
        config["dataset"] = None
    if flags.get("dataset"):
        config["train_data"] = config["test_data"] = None
    return merge(config, flags)
