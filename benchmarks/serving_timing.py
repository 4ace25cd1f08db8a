"""Timing of a loaded SavedModel signature, shared by tfmtl's and DeepCTR's side of the serving benchmark.

Plain Python and NumPy, so it runs under either TensorFlow (the DeepCTR side runs
in its own virtual environment with TensorFlow 2.15).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

LATENCY_BATCH_SIZES = (1, 256)
THROUGHPUT_BATCH_SIZE = 4096


def latency_ms(call: Callable[[], Any], calls: int, warmup: int = 20) -> dict[str, float]:
    """p50 and p99 of `calls` timed calls (after `warmup` untimed ones), in milliseconds."""
    for _ in range(warmup):
        call()
    times = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        call()
        times[i] = time.perf_counter() - started
    times *= 1000
    return {"calls": calls, "p50_ms": round(float(np.percentile(times, 50)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3)}


def examples_per_second(call: Callable[[], Any], batch_size: int, calls: int, warmup: int = 3) -> dict[str, float]:
    """Throughput of `calls` back-to-back calls on batches of `batch_size`."""
    for _ in range(warmup):
        call()
    started = time.perf_counter()
    for _ in range(calls):
        call()
    seconds = time.perf_counter() - started
    return {"calls": calls, "examples_per_second": round(batch_size * calls / seconds)}


def time_signature(signature: Callable[..., Mapping[str, Any]], batches: Mapping[int, Mapping[str, Any]],
                   calls: int, throughput_calls: int) -> dict[str, Any]:
    """Latency at each latency batch size and throughput at the throughput batch size.

    `batches` maps a batch size to the signature's keyword inputs (tensors made
    beforehand, so converting inputs is not timed); one output is read back after
    each call so the call has finished when the clock stops.
    """

    def caller(inputs: Mapping[str, Any]) -> Callable[[], Any]:
        return lambda: next(iter(signature(**inputs).values())).numpy()

    report: dict[str, Any] = {f"batch_{size}": latency_ms(caller(batches[size]), calls) for size in LATENCY_BATCH_SIZES}
    report[f"batch_{THROUGHPUT_BATCH_SIZE}"] = examples_per_second(
        caller(batches[THROUGHPUT_BATCH_SIZE]), THROUGHPUT_BATCH_SIZE, throughput_calls
    )
    return report


def directory_bytes(path: str | os.PathLike) -> int:
    """Total size of the files under `path`."""
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
