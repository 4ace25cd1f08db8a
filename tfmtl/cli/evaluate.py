"""`tfmtl evaluate`: per-task test metrics of a saved model on a table."""

from __future__ import annotations

from pathlib import Path

import keras

from tfmtl.cli.train import MODEL_FILE, evaluate_tasks, evaluation_batches
from tfmtl.data import read_table, write_json
from tfmtl.datasets import DATASETS
from tfmtl.errors import InputError
from tfmtl.features.feature import STRING
from tfmtl.tasks.report import format_table
from tfmtl.zoo import MultiTaskModel


def load_trained_model(model_path: str | Path) -> MultiTaskModel:
    """Loads a model from a `tfmtl train` output folder or a `.keras` file."""
    path = Path(model_path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise InputError(f"--model-path: no saved model at {str(path)!r}")
    model = keras.saving.load_model(path)
    if not isinstance(model, MultiTaskModel):
        raise InputError(f"--model-path: {str(path)!r} is not a tfmtl model")
    return model


def run_evaluation(
    model_path: str, test_data: str | None, dataset_name: str | None, batch_size: int, metrics_json: str | None
) -> dict:
    """Evaluates a saved model; prints the per-task table and writes the metrics as JSON."""
    if batch_size < 1:
        raise InputError(f"--batch-size: expected a positive integer, got {batch_size}")
    model = load_trained_model(model_path)
    if dataset_name is not None:
        if dataset_name not in DATASETS:
            raise InputError(f"--dataset: unknown data set {dataset_name!r}, expected one of {', '.join(DATASETS)}")
        _, test = DATASETS[dataset_name]()
        source = dataset_name
    else:
        test = read_table(test_data, [f.name for f in model.feature_spec if f.dtype == STRING])
        source = test_data
    try:
        batches = evaluation_batches(model, test, batch_size)  # every row, with its error named
    except InputError as error:
        raise InputError(f"test data {source!r}: {error}") from None
    results = evaluate_tasks(model, test, batch_size, batches)
    metrics = {"model_path": str(model_path), "test_data": source, "test_examples": len(test), "tasks": results}
    default = Path(model_path) / "evaluation.json" if Path(model_path).is_dir() else Path(model_path).with_suffix(".evaluation.json")
    path = write_json(Path(metrics_json) if metrics_json else default, metrics)
    print(format_table(results))
    print(f"metrics written to {path}")
    return metrics
