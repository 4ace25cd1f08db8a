"""tfmtl's side of `compare_peers.py`: the shipped Census-Income recipe, trained and predicted as a user would.

Run by `compare_peers.py` with the Python that has tfmtl installed:

    python benchmarks/peers/tfmtl_runner.py --data DIR --model mmoe --seed 1

tfmtl takes the raw DataFrame (`DIR/train.parquet`): its preprocessing (vocabulary
lookups, standardisation) belongs to its pipeline and runs inside
`tfmtl.data.dataset`, timed apart as `prepare_seconds`. The model, optimizer and
training settings are the shipped recipe's (`zoo/census-income/<model>.toml`,
`steps_per_execution` included), with this run's seed, epochs, batch size and
tasks. Fit time is `model.fit` over the dataset, graph tracing included; predict
time is the second of two `model.predict` calls over the test set (the first,
with tracing, is reported as `predict_cold_seconds`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import Stopwatch, finish, model_settings, quiet, start, timed_twice, training_labels

quiet()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmtl  # noqa: E402
from tfmtl.cli.recipe import resolve  # noqa: E402
from tfmtl.cli.train import make_features, make_model, make_tasks  # noqa: E402


def main() -> None:
    args, meta = start(__doc__.splitlines()[0])
    train = pd.read_parquet(Path(args.data) / "train.parquet")
    test = pd.read_parquet(Path(args.data) / "test.parquet")
    # Synthetic extra tasks (scaling study) are label columns like the real ones; only
    # they need the shared labels, and only those are loaded (not the peers' inputs).
    synthetic = [index for index, task in enumerate(args.tasks) if task not in train.columns]
    if synthetic:
        train_labels = training_labels(args.data)
        for index in synthetic:
            train[args.tasks[index]] = train_labels[:, index]
    config = resolve(None, {
        "model": args.model,
        "dataset": "census-income",
        "tasks": [{"name": task, "kind": "binary"} for task in args.tasks],
        "model_args": model_settings(args, meta),
        "training": {"seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size},
    })
    training = config["training"]
    tasks = make_tasks(config, train)
    features = make_features(config, train, tasks)
    if json.loads(json.dumps(features.get_config())) != meta["tfmtl_features"]:
        sys.exit("tfmtl_runner: the features inferred here differ from those the peers were encoded with")
    keras.utils.set_random_seed(args.seed)
    with Stopwatch() as build:
        model = make_model(config, features, tasks)
        model.compile(
            optimizer=keras.optimizers.Adam(training["learning_rate"]),
            weighting=training["weighting"],
            steps_per_execution=training["steps_per_execution"],
        )
    with Stopwatch() as prepare:
        data = tfmtl.data.dataset(train, features, tasks, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    with Stopwatch() as fit:
        model.fit(data, epochs=args.epochs, verbose=0)
    result = {
        "system": "tfmtl",
        "versions": {"tfmtl": tfmtl.__version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        "build_seconds": build.seconds,
        "prepare_seconds": prepare.seconds,
        "fit_seconds": fit.seconds,
    }
    predictions = None
    if not args.skip_predict:
        with Stopwatch() as prepare_test:
            test_data = tfmtl.data.dataset(test, features, batch_size=args.predict_batch_size)
        outputs, seconds = timed_twice(lambda: model.predict(test_data, verbose=0))
        predictions = np.column_stack([np.ravel(outputs[task]) for task in args.tasks])
        result.update(prepare_test_seconds=prepare_test.seconds, **seconds)
    finish(args, result, predictions, len(train), len(test))


if __name__ == "__main__":
    main()
