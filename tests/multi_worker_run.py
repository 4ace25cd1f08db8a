"""One process of the multi-worker tests: trains a small MMoE and writes what it ended with.

Run by tests/test_distribute.py, once per worker with TF_CONFIG set (or once, without,
for the single-process references). Writes into --out:
  weights-<worker>.npz   final weights (trainable variables, in model order)
  run-<worker>.json      history, the epochs begun, the probe results
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmtl  # noqa: E402
from tfmtl.distribute import keras_workaround  # noqa: E402

TASKS = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
ARCHITECTURE = {"num_experts": 3, "expert_units": [16], "tower_units": [8]}


def build(strategy: tf.distribute.Strategy, spec: tfmtl.FeatureSpec, steps_per_execution: int) -> tfmtl.zoo.MMoE:
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = tfmtl.zoo.MMoE(spec, TASKS, **ARCHITECTURE)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=steps_per_execution)
    return model


def probe(strategy: tf.distribute.Strategy, df: pd.DataFrame, spec: tfmtl.FeatureSpec) -> dict[str, str]:
    """Runs Keras' fit without each workaround point: "fails" (still needed) or "works" (fixed)."""
    keras.config.disable_traceback_filtering()
    results = {}
    for point, where in (("symbolic_build", "_maybe_symbolic_build"), ("scalar_logs", "reduce_per_replica")):
        saved = dict(keras_workaround.FIXED_IN)
        keras_workaround.FIXED_IN[point] = "0"  # every release counts as fixed: the point is skipped
        try:
            model = build(strategy, spec, 1)
            data = tfmtl.distribute.distributed_dataset(strategy, df.head(256), spec, TASKS, global_batch_size=128)
            model.fit(data, epochs=1, verbose=0)
            results[point] = "works"
        except Exception as error:  # noqa: BLE001 - which failure it is, is the result
            frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
            results[point] = "fails" if where in frames else f"fails elsewhere: {type(error).__name__}: {error}"[:300]
        finally:
            keras_workaround.FIXED_IN.update(saved)
    keras.config.enable_traceback_filtering()
    return results


class EpochLog(keras.callbacks.Callback):
    """Appends each epoch index as it begins, so a test can see where a run (re)started."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        with open(self.path, "a") as f:
            f.write(f"{epoch}\n")


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategy", default="multi-worker", choices=["multi-worker", "one-device", "mirrored"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--backup-dir")
    parser.add_argument("--probe", action="store_true")
    args = parser.parse_args()
    if args.strategy == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    devices = ["/cpu:0", "/cpu:1"] if args.strategy == "mirrored" else None
    strategy = tfmtl.distribute.strategy(args.strategy, devices=devices)
    worker = strategy.cluster_resolver.task_id if args.strategy == "multi-worker" else args.strategy
    out = Path(args.out)
    df = pd.read_parquet(args.data)
    spec = tfmtl.FeatureSpec.infer(df, exclude=["income", "marital"])
    report: dict = {"replicas": strategy.num_replicas_in_sync, "seconds": {"start": time.perf_counter() - started}}
    if args.probe:
        report["probe"] = probe(strategy, df, spec)
        report["seconds"]["probe"] = time.perf_counter() - started

    model = build(strategy, spec, args.steps_per_execution)
    if args.strategy == "one-device":
        data = tfmtl.data.dataset(df, spec, TASKS, batch_size=args.batch_size, shuffle=True, seed=7)
    else:
        data = tfmtl.distribute.distributed_dataset(
            strategy, df, spec, TASKS, global_batch_size=args.batch_size, shuffle=True, seed=7
        )
    callbacks: list = [EpochLog(out / f"epochs-{worker}.txt")]
    if args.backup_dir:
        callbacks.append(tfmtl.distribute.BackupAndRestore(args.backup_dir))
    fit_started = time.perf_counter()
    history = model.fit(data, epochs=args.epochs, verbose=0, callbacks=callbacks)
    report["seconds"]["fit"] = time.perf_counter() - fit_started
    report["history"] = history.history
    report["epochs"] = history.epoch
    np.savez(out / f"weights-{worker}.npz", *[v.numpy() for v in model.trainable_variables])
    (out / f"run-{worker}.json").write_text(json.dumps(report, default=float))
    print("finished", worker, flush=True)


if __name__ == "__main__":
    sys.exit(main())
