"""Scale-out throughput on this machine: 1 vs 2 workers, float32 vs bfloat16, and embedding memory vs vocabulary.

    python benchmarks/scale_out.py workers     # tfmtl train, one process vs two MultiWorkerMirrored workers
    python benchmarks/scale_out.py precision   # tfmtl train --mixed-precision off vs bf16, one CPU process
    python benchmarks/scale_out.py embedding   # peak memory and step time of one hashed table of growing size

`workers` and `precision` train the reference MMoE (zoo/census-income/mmoe.toml) on all of
Census-Income for one epoch and read `train_examples_per_second` (the whole `fit`, tracing
included) from metrics.json. Two workers on one machine share its cores: the figure says what
the multi-worker path costs here (collectives over loopback gRPC, one step per execution), not
what a cluster of machines gains. `embedding` runs each size in a fresh process and reports its
peak resident memory (Linux's VmHWM) after 20 Adam steps.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _train(out: Path, workers: int, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "tfmtl.cli.main", "train", "--dataset", "census-income", "--epochs", "1",
               "--verbose", "0", "--out", str(out), *extra]  # fmt: skip
    ports = _ports(workers)
    processes = []
    for index in range(workers):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if workers > 1:
            cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        processes.append(process)
    try:
        for process in processes:
            _, err = process.communicate(timeout=3600)
            if process.returncode:
                raise SystemExit(f"tfmtl train failed: {err[-2000:]}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return json.loads((out / "metrics.json").read_text())


def _recipe(folder: Path, steps_per_execution: int) -> list[str]:
    """The reference recipe with another steps_per_execution."""
    recipe = tomllib.loads((REPO / "zoo" / "census-income" / "mmoe.toml").read_text())
    recipe.pop("results", None)
    recipe.setdefault("training", {})["steps_per_execution"] = steps_per_execution
    path = folder / f"mmoe-spe{steps_per_execution}.json"
    path.write_text(json.dumps(recipe))
    return ["--recipe", str(path)]


def workers() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        one = ["--strategy", "one-device"]
        rows = [
            ("1 process, steps_per_execution 16 (recipe)", _train(folder / "a", 1, one)),
            ("1 process, steps_per_execution 1", _train(folder / "b", 1, [*one, *_recipe(folder, 1)])),
            ("2 workers (MultiWorkerMirrored), steps_per_execution 1",
             _train(folder / "c", 2, ["--strategy", "multi-worker"])),
        ]
    _print(rows)


def precision() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        flags = ["--strategy", "one-device", "--mixed-precision"]
        rows = [(f"--mixed-precision {mode}", _train(Path(tmp) / mode, 1, [*flags, mode])) for mode in ("off", "bf16")]
    _print(rows)


def _print(rows: list[tuple[str, dict]]) -> None:
    print("| run | examples/s (1 epoch, fit) | train s | income AUC | marital AUC |")
    print("|---|---|---|---|---|")
    for name, m in rows:
        print(f"| {name} | {m['train_examples_per_second']:.0f} | {m['train_seconds']:.1f} | "
              f"{m['tasks']['income']['auc']:.4f} | {m['tasks']['marital']['auc']:.4f} |")  # fmt: skip


EMBEDDING_PROBE = """
import re, sys, time, numpy as np, keras, tensorflow as tf
from tfmtl.features import HashedFeature
from tfmtl.layers import FieldEmbedding
rows, dim = int(sys.argv[1]), int(sys.argv[2])
layer = FieldEmbedding([HashedFeature("id", rows, dim)])
layer.build()
optimizer = keras.optimizers.Adam(1e-3)
optimizer.build(layer.trainable_variables)
ids = {"id": np.array([str(i) for i in range(4096)])}

@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(ids)))
    grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, layer.trainable_variables)]
    optimizer.apply(grads, layer.trainable_variables)

step()
started = time.perf_counter()
for _ in range(20):
    step()
seconds = (time.perf_counter() - started) / 20
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the launching process across exec.
peak_kib = int(re.search(r"VmHWM:\s*(\d+)", open("/proc/self/status").read()).group(1))
print(peak_kib / 1024, seconds)
"""


def embedding() -> None:
    print("| table rows x dim | parameters (MB, float32) | peak RSS (MB) | Adam step, batch 4096 (ms) |")
    print("|---|---|---|---|")
    for rows, dim in [(10_000, 8), (1_000_000, 8), (10_000_000, 8), (10_000_000, 16)]:
        result = subprocess.run([sys.executable, "-c", EMBEDDING_PROBE, str(rows), str(dim)], capture_output=True,
                                text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=1800)  # fmt: skip
        if result.returncode:
            print(f"| {rows:,} x {dim} | failed: {result.stderr.strip().splitlines()[-1]} | | |")
            continue
        rss, seconds = (float(v) for v in result.stdout.split())
        print(f"| {rows:,} x {dim} | {rows * dim * 4 / 2**20:.0f} | {rss:.0f} | {seconds * 1000:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["workers", "precision", "embedding"])
    {"workers": workers, "precision": precision, "embedding": embedding}[parser.parse_args().what]()
