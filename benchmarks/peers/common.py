"""What every system's runner of `compare_peers.py` shares: arguments, data, timing, the result line.

Plain Python and NumPy, so it runs in any of the runners' environments (tfmtl's,
DeepCTR's with TensorFlow 2.15, torch-rechub's with PyTorch). A runner is started
as a subprocess by `compare_peers.py` with the Python of its own environment:

    PYTHON benchmarks/peers/RUNNER.py --data DIR --model mmoe --seed 1 [--epochs 2] ...

`DIR` is what `compare_peers.py` wrote once for all systems: `arrays.npz` (the
encoded inputs, `train__NAME`/`test__NAME`: category ids with 0 for a value not
seen in training, numbers standardised with training statistics; and the labels
`train__labels`/`test__labels`, one column per task), `meta.json` (feature kinds,
vocabulary sizes, task names, the reference configuration) and, for tfmtl, the
raw `train.parquet`/`test.parquet`. The runner trains, predicts the test set,
writes its predictions to `--predictions` and prints one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULT_PREFIX = "RESULT "
MODELS = ("mmoe", "shared-bottom", "ple")


def start(description: str) -> tuple[argparse.Namespace, dict[str, Any]]:
    """`(args, meta)`; seeds Python's and NumPy's generators. Call it after the framework's imports.

    Also notes the resident memory now, with the framework imported and no data
    yet, so the report can tell the framework's share of the peak from the rest.
    """
    import_rss_mb = memory_mb("VmRSS")
    import_split = resident_split_mb()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, help="the folder compare_peers.py wrote")
    parser.add_argument("--model", choices=MODELS, default="mmoe")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, help="default: the reference configuration's")
    parser.add_argument("--batch-size", type=int, help="default: the reference configuration's")
    parser.add_argument("--num-experts", type=int, help="MMoE only; default: the reference configuration's")
    parser.add_argument("--num-tasks", type=int, default=2, help="the first N tasks of meta.json (2 real ones first)")
    parser.add_argument("--predict-batch-size", type=int, default=8192)
    parser.add_argument("--skip-predict", action="store_true", help="train only (scaling runs)")
    parser.add_argument("--predictions", help="write the test predictions here (.npy, one column per task)")
    args = parser.parse_args()
    meta = json.loads((Path(args.data) / "meta.json").read_text())
    args.epochs = args.epochs or meta["training"]["epochs"]
    args.batch_size = args.batch_size or meta["training"]["batch_size"]
    args.num_experts = args.num_experts or meta["models"]["mmoe"]["num_experts"]
    args.tasks = meta["tasks"][: args.num_tasks]
    if len(args.tasks) != args.num_tasks:
        parser.error(f"--num-tasks: at most {len(meta['tasks'])}")
    args.import_rss_mb = import_rss_mb
    args.import_split = import_split
    random.seed(args.seed)
    np.random.seed(args.seed)
    return args, meta


def model_settings(args: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    """The model's sizes from the reference recipes, with this run's number of experts."""
    settings = dict(meta["models"][args.model])
    if args.model == "mmoe":
        settings["num_experts"] = args.num_experts
    return settings


def encoded_arrays(folder: str, num_tasks: int) -> tuple[dict, np.ndarray, dict, np.ndarray]:
    """`(train_inputs, train_labels, test_inputs, test_labels)`: inputs keyed by feature, labels `(rows, tasks)`."""
    with np.load(Path(folder) / "arrays.npz") as arrays:
        split = {"train": {}, "test": {}}
        for key in arrays.files:
            part, name = key.split("__", 1)
            split[part][name] = arrays[key]
    train_labels, test_labels = split["train"].pop("labels"), split["test"].pop("labels")
    return split["train"], train_labels[:, :num_tasks], split["test"], test_labels[:, :num_tasks]


def training_labels(folder: str) -> np.ndarray:
    """The training labels of every task in meta.json, `(rows, tasks)`, without loading the encoded inputs."""
    with np.load(Path(folder) / "arrays.npz") as arrays:
        return arrays["train__labels"]


def memory_mb(field: str = "VmHWM") -> float:
    """This process's peak (`VmHWM`) or current (`VmRSS`) resident memory, in MiB.

    From Linux's `/proc/self/status`. `getrusage`'s `ru_maxrss` serves only where
    there is no `/proc`: Linux carries it over from the launching process across
    `exec`, so every runner would report at least `compare_peers.py`'s own peak.
    """
    status = _status_kib()
    if field in status:
        return status[field] / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def resident_split_mb() -> dict[str, float]:
    """This process's resident memory now, `{"anon": MiB, "file": MiB}`; empty where there is no `/proc`."""
    status = _status_kib()
    return {"anon": status["RssAnon"] / 1024, "file": status["RssFile"] / 1024} if "RssAnon" in status else {}


def _status_kib() -> dict[str, int]:
    """The kB fields of `/proc/self/status` (`VmHWM`, `RssAnon`, ...); empty where there is none."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    fields = (line.split() for line in lines)
    return {f[0].rstrip(":"): int(f[1]) for f in fields if len(f) == 3 and f[2] == "kB"}


class Stopwatch:
    """`with Stopwatch() as watch: ...`, then `watch.seconds`."""

    def __enter__(self) -> "Stopwatch":
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.started


def timed_twice(predict: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Calls `predict` twice; its second result, and the seconds of the second (warm) and first (cold) call.

    The first call pays one-off costs (graph tracing, allocations); prediction
    throughput is reported from the second.
    """
    with Stopwatch() as cold:
        predict()
    with Stopwatch() as warm:
        outputs = predict()
    return outputs, {"predict_seconds": warm.seconds, "predict_cold_seconds": cold.seconds}


def finish(args: argparse.Namespace, result: dict[str, Any], predictions: np.ndarray | None,
           train_rows: int, test_rows: int) -> None:
    """Adds throughputs and peak memory, saves the predictions and prints the result line."""
    result.update(
        model=args.model, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
        num_experts=args.num_experts if args.model == "mmoe" else None, num_tasks=len(args.tasks),
        train_rows=train_rows, test_rows=test_rows,
        train_examples_per_second=args.epochs * train_rows / result["fit_seconds"],
        peak_rss_mb=memory_mb("VmHWM"), import_rss_mb=args.import_rss_mb,
    )
    # Not peaks (Linux keeps no peak per kind): what the resident memory is made of after the
    # imports and at the end, anonymous (heap: data, model, compiled code) or file-backed
    # (mapped libraries, e.g. the framework's shared objects).
    result.update({f"import_{kind}_rss_mb": mb for kind, mb in args.import_split.items()})
    result.update({f"end_{kind}_rss_mb": mb for kind, mb in resident_split_mb().items()})
    if predictions is not None:
        predictions = np.asarray(predictions, dtype=np.float32).reshape(test_rows, len(args.tasks))
        result["predict_examples_per_second"] = test_rows / result["predict_seconds"]
        if args.predictions:
            np.save(args.predictions, predictions)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def quiet() -> None:
    """Less log noise from TensorFlow and progress bars; set before the frameworks are imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.stdout.reconfigure(line_buffering=True)
