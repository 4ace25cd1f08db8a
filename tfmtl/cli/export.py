"""`tfmtl export`: a trained model to a TF Serving model directory."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tfmtl.cli.evaluate import load_trained_model
from tfmtl.cli.predict import read_chunks
from tfmtl.datasets import DATASETS
from tfmtl.export import export_saved_model
from tfmtl.export.model_directory import version_folder
from tfmtl.export.saved_model import WARMUP_ROWS
from tfmtl.features.feature import STRING


def warmup_data(model_path: str, warmup_file: str | None, text_columns: list[str]) -> tuple[pd.DataFrame | None, str]:
    """The first training rows for the warm-up requests, and where they came from.

    From `--warmup-data` when given, else from the training data named in the
    training folder's `recipe.json`; without either, the export builds them from
    the model's training statistics.
    """
    if warmup_file:
        return next(read_chunks(warmup_file, WARMUP_ROWS, text_columns, argument="--warmup-data")), warmup_file
    recipe = Path(model_path) / "recipe.json"
    if not recipe.is_file():
        return None, "the training statistics"
    config = json.loads(recipe.read_text())
    if config.get("dataset") in DATASETS:
        return DATASETS[config["dataset"]]()[0].head(WARMUP_ROWS), config["dataset"]
    train_data = config.get("train_data")
    if train_data and Path(train_data).is_file():
        return next(read_chunks(train_data, WARMUP_ROWS, text_columns)), train_data
    return None, "the training statistics"


def run_export(model_path: str, out: str, version: int | None, overwrite: bool, warmup_file: str | None) -> Path:
    """Exports a saved model as a TF Serving model directory; prints and returns the version folder."""
    version_folder(out, version, overwrite)  # a version that is in the way fails before the slow part
    model = load_trained_model(model_path)
    text_columns = [f.name for f in model.feature_spec if f.dtype == STRING]
    rows, source = warmup_data(model_path, warmup_file, text_columns)
    path = export_saved_model(model, out, version=version, overwrite=overwrite, warmup_data=rows)
    print(f"exported to {path} (signatures serving_default and tf_example; warm-up requests from {source})")
    return path
