"""Training throughput and test AUC of tfmtl's reference configuration on Census-Income.

Trains the shipped recipe (`zoo/census-income/mmoe.toml`: MMoE, embeddings of 8,
8 experts x 64, towers of 32, Adam 1e-3, batch 1024, 2 epochs) from data already in
memory, and reports per seed: examples/second of the whole `fit` (tracing
included), of the last epoch alone (steady state), and the per-task test AUC.

    python benchmarks/train_throughput.py --seeds 1 2 3 [--model shared-bottom] [--out results.json]

A script, not a test: these machines are noisy, so compare systems within one run
(the peers' side-by-side benchmark is its own script).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tfmtl  # noqa: E402
from tfmtl.cli.recipe import resolve  # noqa: E402
from tfmtl.cli.train import evaluate_tasks, make_features, make_model, make_tasks  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.last_epoch_seconds = time.perf_counter() - self.started


def run(model_name: str, seed: int, train, test) -> dict:
    config = resolve(None, {"model": model_name, "dataset": "census-income", "training": {"seed": seed}})
    training = config["training"]
    tasks = make_tasks(config, train)
    features = make_features(config, train, tasks)
    keras.utils.set_random_seed(seed)
    model = make_model(config, features, tasks)
    model.compile(
        optimizer=keras.optimizers.Adam(training["learning_rate"]),
        weighting=training["weighting"],
        steps_per_execution=training["steps_per_execution"],
    )
    data = tfmtl.data.dataset(train, features, tasks, batch_size=training["batch_size"], shuffle=True, seed=seed)
    timer = EpochTimer()
    started = time.perf_counter()
    model.fit(data, epochs=training["epochs"], verbose=0, callbacks=[timer])
    seconds = time.perf_counter() - started
    results = evaluate_tasks(model, test, batch_size=8192)
    return {
        "seed": seed,
        "fit_seconds": round(seconds, 2),
        "fit_examples_per_second": round(training["epochs"] * len(train) / seconds),
        "last_epoch_examples_per_second": round(len(train) / timer.last_epoch_seconds),
        **{f"{task}_auc": round(values["auc"], 4) for task, values in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mmoe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rows", type=int, help="use only the first ROWS training rows (smoke runs)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    train, test = tfmtl.datasets.census_income()
    if args.rows:
        train, test = train.head(args.rows), test.head(args.rows)
    runs = [run(args.model, seed, train, test) for seed in args.seeds]
    summary = {}
    for key in runs[0]:
        if key == "seed":
            continue
        values = [r[key] for r in runs]
        summary[key] = {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    report = {
        "model": args.model,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "tensorflow": __import__("tensorflow").__version__,
        "keras": keras.__version__,
        "train_rows": len(train),
        "runs": runs,
        "summary": summary,
    }
    print("| metric | mean | std |\n|---|---|---|")
    for key, value in summary.items():
        print(f"| {key} | {value['mean']:.4f} | {value['std']:.4f} |")
    if args.out:
        tfmtl.data.write_json(args.out, report)


if __name__ == "__main__":
    main()
