"""DeepCTR 0.9.4's MMOE saved as a SavedModel, loaded and timed like tfmtl's export.

Run by `serving_latency.py` with the Python of a separate virtual environment
(DeepCTR needs Keras 2, i.e. TensorFlow <= 2.15); never imported by tfmtl:

    python -m venv /tmp/deepctr-venv
    /tmp/deepctr-venv/bin/pip install deepctr==0.9.4 "tensorflow-cpu==2.15.*"

    /tmp/deepctr-venv/bin/python benchmarks/deepctr_serving.py INPUTS.npz META.json OUT.json --calls 1000

INPUTS.npz holds the Census-Income test rows already encoded as DeepCTR expects
them (category indices, standardised numbers); META.json the vocabulary sizes.
DeepCTR keeps preprocessing outside the model, so its signature takes these
encoded values, where tfmtl's takes raw strings and numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from deepctr.feature_column import DenseFeat, SparseFeat  # noqa: E402
from deepctr.models import MMOE  # noqa: E402
from serving_timing import LATENCY_BATCH_SIZES, THROUGHPUT_BATCH_SIZE, directory_bytes, time_signature  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs")
    parser.add_argument("meta")
    parser.add_argument("out")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--throughput-calls", type=int, default=50)
    args = parser.parse_args()
    meta = json.load(open(args.meta))
    arrays = np.load(args.inputs)
    columns = [SparseFeat(name, vocabulary_size=size, embedding_dim=meta["embedding_dim"])
               for name, size in meta["vocabulary_sizes"].items()]
    columns += [DenseFeat(name, 1) for name in meta["dense"]]
    model = MMOE(columns, num_experts=meta["num_experts"], expert_dnn_hidden_units=tuple(meta["expert_units"]),
                 tower_dnn_hidden_units=tuple(meta["tower_units"]), task_types=("binary", "binary"),
                 task_names=tuple(meta["tasks"]))
    with tempfile.TemporaryDirectory() as folder:
        version = os.path.join(folder, "1")
        started = time.perf_counter()
        tf.saved_model.save(model, version)
        export_seconds = time.perf_counter() - started
        loaded = tf.saved_model.load(version)
        signature = loaded.signatures["serving_default"]
        batches = {
            size: {name: tf.constant(arrays[name][:size].reshape(-1, 1)) for name in arrays.files}
            for size in (*LATENCY_BATCH_SIZES, THROUGHPUT_BATCH_SIZE)
        }
        report = {
            "system": f"DeepCTR 0.9.4 MMOE (TensorFlow {tf.__version__})",
            "export_seconds": round(export_seconds, 2),
            "export_bytes": directory_bytes(version),
            **time_signature(signature, batches, args.calls, args.throughput_calls),
        }
    json.dump(report, open(args.out, "w"), indent=2)


if __name__ == "__main__":
    main()
