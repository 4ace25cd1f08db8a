"""`tfmtl train`: data, tasks and features from a resolved recipe, then fit, test and save."""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import pandas as pd

import tfmtl
from tfmtl.data import dataset, read_table, write_atomically, write_json
from tfmtl.data.files import make_folder
from tfmtl.cli.recipe import DATA_PATHS, absolute_data_path
from tfmtl.cli.scale_out import ScaleOut, training_data
from tfmtl.datasets import DATASETS, DEFAULT_TASKS
from tfmtl.distribute.tfrecord import read_tfrecords
from tfmtl.errors import InputError
from tfmtl.features import FeatureSpec
from tfmtl.tasks import Task, check_tasks
from tfmtl.tasks.report import format_table, per_task_metrics
from tfmtl.zoo import MODELS

MODEL_FILE = "model.keras"
HOLDOUT_FRACTION = 0.2
# Test and validation rows go through the model in batches of at least this many: no gradients, so bigger is faster.
EVALUATION_BATCH_SIZE = 8192
# Model arguments come from --model-arg flags and from a recipe's [model_args]: errors name both.
ARGUMENT_SOURCES = "model arguments (--model-arg, [model_args])"


def read_any(path: str, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """A CSV or Parquet file, or a folder of TFRecord shards written by `tfmtl data to-tfrecord`.

    CSV columns in `text_columns` are read as text (see `read_table`).
    """
    return read_tfrecords(path) if Path(path).is_dir() else read_table(path, text_columns)


def load_data(config: Mapping[str, Any], hold_out_test: bool = True) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """Returns `(train, test, data_name)` for the recipe's `dataset` or `train_data`/`test_data`.

    Without `test_data`, `hold_out_test` sets `HOLDOUT_FRACTION` of the training rows
    apart as the test set; otherwise the test set is None.
    """
    if config.get("dataset"):
        name = config["dataset"]
        if name not in DATASETS:
            raise InputError(f"--dataset: unknown data set {name!r}, expected one of {', '.join(DATASETS)}")
        train, test = DATASETS[name]()
        return train, test, name
    if not config.get("train_data"):
        raise InputError("give --dataset NAME or --train-data FILE (or a --recipe that names one)")
    train = read_any(config["train_data"])
    name = Path(config["train_data"]).name.split(".")[0]
    if config.get("test_data"):
        # Text in training is text in the test file, even where a test column holds only digits.
        types = pd.api.types
        text = [c for c in train.columns if types.is_string_dtype(train[c]) or types.is_object_dtype(train[c])]
        return train, read_any(config["test_data"], text), name
    if not hold_out_test:
        return train, None, name
    seed = config["training"]["seed"]
    test = train.sample(frac=HOLDOUT_FRACTION, random_state=seed)
    print(f"no --test-data: holding out {len(test)} of {len(train)} training rows as the test set")
    return train.drop(index=test.index), test, name


def make_tasks(config: Mapping[str, Any], train: pd.DataFrame) -> list[Task]:
    specs = config.get("tasks") or [
        dict(zip(("name", "kind", "label", "parent", "conditional_name"), entry))
        for entry in DEFAULT_TASKS.get(config.get("dataset") or "", [])
    ]
    if not specs:
        raise InputError("--task: give at least one task as NAME:KIND[:COLUMN]")
    tasks = []
    for spec in specs:
        if not isinstance(spec, Mapping):
            raise InputError(f"tasks: expected a table per task (name, kind, ...), got {spec!r}")
        try:
            task = Task(**spec)
        except TypeError as error:
            raise InputError(f"task {spec.get('name')!r}: {error}") from None
        if task.label not in train.columns:
            raise InputError(f"task {task.name!r}: label column {task.label!r} is not in the training data")
        tasks.append(task.with_classes_from(train))
    return tasks


def make_features(config: Mapping[str, Any], train: pd.DataFrame, tasks: list[Task]) -> FeatureSpec:
    drop = list(config.get("drop") or [])
    unknown = [c for c in drop if c not in train.columns]
    if unknown:
        raise InputError(f"--drop: column(s) {unknown} are not in the training data")
    not_features = {t.label for t in tasks} | {t.sample_weight for t in tasks if t.sample_weight} | set(drop)
    options = config["features"]
    return FeatureSpec.infer(
        train,
        exclude=sorted(not_features),
        categorical=options.get("categorical", []),
        numeric=options.get("numeric", []),
        embedding_dim=options.get("embedding_dim", 8),
    )


def make_model(config: Mapping[str, Any], features: FeatureSpec, tasks: list[Task]) -> tfmtl.zoo.MultiTaskModel:
    name = config["model"]
    if name not in MODELS:
        raise InputError(f"--model: unknown model {name!r}, expected one of {', '.join(MODELS)}")
    args = dict(config.get("model_args") or {})
    check_model_arguments(name, args)
    check_tasks(tasks)  # a task's own error, not one of the model arguments
    try:
        return MODELS[name](features, tasks, **args)
    except (TypeError, ValueError) as error:
        # A value of the wrong range that the model's own checks did not name.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{ARGUMENT_SOURCES}: {name} rejected {args}: {first_line}") from None


def check_model_arguments(name: str, args: Mapping[str, Any]) -> None:
    """One-line errors for arguments `name` does not take and for values whose type differs from the default's.

    Example:

    ```python
    check_model_arguments("mmoe", {"num_experts": "many"})   # InputError: ... expected an integer
    ```
    """
    parameters = {
        **inspect.signature(tfmtl.zoo.MultiTaskModel.__init__).parameters,
        **inspect.signature(MODELS[name].__init__).parameters,
    }
    unknown = sorted(set(args) - set(parameters) - {"self", "kwargs", "features", "tasks"})
    if unknown:
        raise InputError(f"{ARGUMENT_SOURCES}: {name} has no argument(s) {unknown}")
    for key, value in args.items():
        default = parameters[key].default
        if isinstance(default, bool):
            expected, fits = "true or false", isinstance(value, bool)
        elif isinstance(default, int):
            expected, fits = "an integer", isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            expected, fits = "a number", isinstance(value, (int, float)) and not isinstance(value, bool)
        elif isinstance(default, (list, tuple)):
            expected, fits = "a list", isinstance(value, (list, tuple))
        else:  # strings may also be tables (a gate with options); the model checks those
            continue
        if not fits:
            raise InputError(f"model argument {key} of {name}: expected {expected}, got {value!r}")


def evaluation_batches(model: tfmtl.zoo.MultiTaskModel, test: pd.DataFrame, batch_size: int) -> Any:
    """`test` as `model`'s evaluation batches: every row converted and checked once."""
    return dataset(test, model.feature_spec, model.tasks, batch_size=batch_size, fused=model.fused_embeddings)


def evaluate_tasks(
    model: tfmtl.zoo.MultiTaskModel, test: pd.DataFrame, batch_size: int = EVALUATION_BATCH_SIZE, batches: Any = None
) -> dict:
    """Per-task test metrics; `batches` are `evaluation_batches(model, test, ...)` when already made."""
    scores = model.evaluate(
        evaluation_batches(model, test, batch_size) if batches is None else batches, return_dict=True, verbose=0
    )
    metrics = per_task_metrics(model.tasks, scores)
    for task in model.tasks:
        if test[task.label].notna().sum() == 0:
            # Keras' metrics read 0 with nothing to count, which looks like a perfect log loss.
            metrics[task.name] = {name: None for name in metrics[task.name]}
    return metrics


def run_training(
    config: dict[str, Any],
    out: str | None,
    metrics_json: str | None,
    verbose: int = 2,
    scale_out: ScaleOut | None = None,
) -> dict:
    """Trains, evaluates and saves as the resolved recipe says; returns the metrics dict.

    `scale_out` says where and how (strategy, mixed precision, backups); by default
    the `auto` strategy in float32. Under several workers only the chief writes files.
    """
    training = config["training"]
    for key in ("epochs", "batch_size", "steps_per_execution"):
        if not isinstance(training[key], int) or training[key] < 1:
            raise InputError(f"--{key.replace('_', '-')}: expected a positive integer, got {training[key]!r}")
    seed = training["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InputError(f"--seed: expected an integer from 0 to 2**32 - 1, got {seed!r}")
    if not isinstance(training["jit_compile"], bool):
        raise InputError(f"training.jit_compile: expected true or false, got {training['jit_compile']!r}")
    if not training["learning_rate"] > 0:
        raise InputError(f"--learning-rate: expected a positive number, got {training['learning_rate']!r}")
    scale_out = scale_out or ScaleOut()
    distribution = scale_out.start(training["batch_size"])  # first: a missing TPU fails before any data is read
    train, test, data_name = load_data(config)
    tasks = make_tasks(config, train)
    features = make_features(config, train, tasks)
    with scale_out.building(training["batch_size"], training["learning_rate"]):
        keras.utils.set_random_seed(training["seed"])
        model = make_model(config, features, tasks)
        model.compile(
            optimizer=keras.optimizers.Adam(training["learning_rate"]),
            weighting=training["weighting"],
            steps_per_execution=training["steps_per_execution"],
            jit_compile=training["jit_compile"],
        )
    train_ds = training_data(distribution, train, model, training["batch_size"], training["seed"])
    try:
        # Every test row, before training: a bad value there must not surface only after the fit.
        test_ds = evaluation_batches(model, test, max(training["batch_size"], EVALUATION_BATCH_SIZE))
    except InputError as error:
        raise InputError(f"test data: {error}") from None
    print(f"{config['model']} on {data_name}: {len(train)} training rows, {len(test)} test rows, "
          f"{len(features)} features, tasks {', '.join(t.name for t in tasks)}")
    out_dir = make_folder(out or Path("runs") / f"{config['model']}-{data_name}")  # before, not after, training
    started = time.perf_counter()
    model.fit(train_ds, epochs=training["epochs"], verbose=verbose, callbacks=scale_out.callbacks(out_dir))
    train_seconds = time.perf_counter() - started
    if not scale_out.save(model, out_dir / MODEL_FILE):
        print(f"worker done: the chief writes the model and metrics to {out_dir}")
        return {}
    # Across replicas Keras averages each replica's metric (an AUC of AUCs): test the saved model on one device.
    tested = model if distribution.num_replicas_in_sync == 1 else keras.saving.load_model(out_dir / MODEL_FILE)
    results = evaluate_tasks(tested, test, batches=test_ds)
    metrics = {
        "model": config["model"],
        "dataset": data_name,
        "epochs": training["epochs"],
        "batch_size": training["batch_size"],
        "learning_rate": training["learning_rate"],
        "seed": training["seed"],
        "weighting": training["weighting"],
        "train_examples": len(train),
        "test_examples": len(test),
        "tasks": results,
        "train_seconds": round(train_seconds, 3),
        "train_examples_per_second": round(
            (training["epochs"] - scale_out.resumed_from_epoch) * len(train) / train_seconds, 1
        ),
        **scale_out.describe_run(),
    }
    # Data paths as typed are relative to where train ran; the recipe file reads them relative to itself.
    rerun = {**config, **{key: absolute_data_path(config[key], Path.cwd()) for key in DATA_PATHS if config.get(key)}}
    write_json(out_dir / "recipe.json", rerun)
    metrics_path = Path(metrics_json) if metrics_json else out_dir / "metrics.json"
    write_json(metrics_path, metrics)
    print(format_table(results))
    print(f"trained in {train_seconds:.1f} s ({metrics['train_examples_per_second']:.0f} examples/s); "
          f"model saved to {out_dir / MODEL_FILE}, metrics to {metrics_path}")
    return metrics
