"""Serving latency and throughput of the reference MMoE's SavedModel, with export time and size, beside DeepCTR.

Builds the shipped reference MMoE (`zoo/census-income/mmoe.toml`: embeddings of 8,
8 experts x 64, towers of 32) on the bundled Census-Income data, exports it with
`tfmtl.export.export_saved_model` (warm-up requests included), loads it with
`tf.saved_model.load` in this process and calls its `serving_default` signature
with raw Census-Income test rows: p50/p99 latency over `--calls` calls at batch 1
and 256, and throughput at batch 4096. Inputs are made into tensors beforehand.

    python benchmarks/serving_latency.py [--calls 1000] [--fit-epochs 0] [--out results.json] \
        [--deepctr-python /tmp/deepctr-venv/bin/python]

The same measurements for DeepCTR 0.9.4's MMOE (same sizes; saved with
`tf.saved_model.save`, loaded the same way) run in the same invocation, in a
subprocess with DeepCTR's own virtual environment, which needs Keras 2 (TensorFlow
<= 2.15) and is never a tfmtl dependency. Set it up once with:

    python -m venv /tmp/deepctr-venv
    /tmp/deepctr-venv/bin/pip install deepctr==0.9.4 "tensorflow-cpu==2.15.*"

Without it the DeepCTR side is skipped. DeepCTR's model takes category indices and
standardised numbers (preprocessing happens outside it), while tfmtl's takes raw
strings and numbers and does vocabulary lookups and standardisation in the graph.
Latency does not depend on the weights, so the model is not trained unless
`--fit-epochs` says so. A script, not a test: timings on shared machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmtl  # noqa: E402
from tfmtl.cli.recipe import resolve  # noqa: E402
from tfmtl.cli.train import make_features, make_model, make_tasks  # noqa: E402
from tfmtl.export import export_saved_model, input_signature  # noqa: E402
from tfmtl.export.names import signature_names  # noqa: E402
from tfmtl.features import CategoricalFeature, NumericFeature  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_timing import LATENCY_BATCH_SIZES, THROUGHPUT_BATCH_SIZE, directory_bytes, time_signature  # noqa: E402

BATCH_SIZES = (*LATENCY_BATCH_SIZES, THROUGHPUT_BATCH_SIZE)


def reference_mmoe(train, fit_epochs: int):
    config = resolve(None, {"model": "mmoe", "dataset": "census-income"})
    tasks = make_tasks(config, train)
    features = make_features(config, train, tasks)
    keras.utils.set_random_seed(config["training"]["seed"])
    model = make_model(config, features, tasks)
    if fit_epochs:
        model.compile(optimizer=keras.optimizers.Adam(config["training"]["learning_rate"]))
        model.fit(tfmtl.data.dataset(train, features, tasks, batch_size=1024, shuffle=True, seed=1),
                  epochs=fit_epochs, verbose=0)
    return config, model


def tfmtl_side(model, train, test, calls: int, throughput_calls: int, folder: str) -> dict:
    started = time.perf_counter()
    version = export_saved_model(model, Path(folder) / "tfmtl-mmoe", warmup_data=train)
    export_seconds = time.perf_counter() - started
    loaded = tf.saved_model.load(str(version))
    signature = loaded.signatures["serving_default"]
    names = signature_names(model.feature_spec.names, "feature")
    raw = model.feature_spec.input_arrays(test.head(THROUGHPUT_BATCH_SIZE))
    dtypes = {name: spec.dtype for name, spec in input_signature(model.feature_spec).items()}
    batches = {
        size: {names[k]: tf.constant(v[:size], dtype=dtypes[names[k]]) for k, v in raw.items()} for size in BATCH_SIZES
    }
    return {
        "system": f"tfmtl {tfmtl.__version__} MMoE (TensorFlow {tf.__version__}, Keras {keras.__version__})",
        "export_seconds": round(export_seconds, 2),
        "export_bytes": directory_bytes(version),
        **time_signature(signature, batches, calls, throughput_calls),
    }


def deepctr_inputs(model, test, folder: str) -> tuple[str, str]:
    """The test rows encoded as DeepCTR takes them, and the model's sizes, written for the subprocess."""
    spec, rows = model.feature_spec, test.head(THROUGHPUT_BATCH_SIZE)
    raw = spec.input_arrays(rows)
    arrays, sizes = {}, {}
    for feature in spec:
        if isinstance(feature, CategoricalFeature):
            index = {value: i + 1 for i, value in enumerate(feature.vocabulary)}  # 0: out of vocabulary
            arrays[feature.name] = np.array([index.get(str(v), 0) for v in raw[feature.name]], np.int32)
            sizes[feature.name] = len(feature.vocabulary) + 1
        elif isinstance(feature, NumericFeature):
            values = (raw[feature.name] - feature.mean) / np.sqrt(max(feature.variance, 1e-12))
            arrays[feature.name] = np.nan_to_num(values).astype(np.float32)
    inputs, meta = os.path.join(folder, "deepctr_inputs.npz"), os.path.join(folder, "deepctr_meta.json")
    np.savez(inputs, **arrays)
    dense = [f.name for f in spec if isinstance(f, NumericFeature)]
    Path(meta).write_text(json.dumps({
        "vocabulary_sizes": sizes, "dense": dense, "embedding_dim": 8, "num_experts": model.num_experts,
        "expert_units": model.expert_units, "tower_units": model.tower_units, "tasks": [t.name for t in model.tasks],
    }))
    return inputs, meta


def deepctr_side(model, test, python: str, calls: int, throughput_calls: int, folder: str) -> dict | None:
    if not Path(python).is_file():
        print(f"DeepCTR side skipped: no {python} (see this script's docstring for the set-up)", file=sys.stderr)
        return None
    inputs, meta = deepctr_inputs(model, test, folder)
    out = os.path.join(folder, "deepctr.json")
    script = Path(__file__).resolve().parent / "deepctr_serving.py"
    run = subprocess.run([python, str(script), inputs, meta, out, "--calls", str(calls),
                          "--throughput-calls", str(throughput_calls)], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"DeepCTR side failed:\n{run.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per latency batch size")
    parser.add_argument("--throughput-calls", type=int, default=50, help="timed calls at batch 4096")
    parser.add_argument("--fit-epochs", type=int, default=0)
    parser.add_argument("--deepctr-python", default="/tmp/deepctr-venv/bin/python")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    train, test = tfmtl.datasets.census_income()
    _, model = reference_mmoe(train, args.fit_epochs)
    with tempfile.TemporaryDirectory() as folder:
        systems = [tfmtl_side(model, train, test, args.calls, args.throughput_calls, folder)]
        deepctr = deepctr_side(model, test, args.deepctr_python, args.calls, args.throughput_calls, folder)
    systems += [deepctr] if deepctr else []
    print("| system | export s | export MB | batch 1 p50 / p99 ms | batch 256 p50 / p99 ms | batch 4096 examples/s |")
    print("|---|---|---|---|---|---|")
    for s in systems:
        print(f"| {s['system']} | {s['export_seconds']:.2f} | {s['export_bytes'] / 1e6:.2f} "
              f"| {s['batch_1']['p50_ms']:.2f} / {s['batch_1']['p99_ms']:.2f} "
              f"| {s['batch_256']['p50_ms']:.2f} / {s['batch_256']['p99_ms']:.2f} "
              f"| {s['batch_4096']['examples_per_second']:,} |")
    if args.out:
        tfmtl.data.write_json(args.out, {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                                         "calls": args.calls, "systems": systems})


if __name__ == "__main__":
    main()
