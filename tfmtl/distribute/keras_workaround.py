"""The two places where Keras' `fit` breaks under MultiWorkerMirroredStrategy, worked around.

Keras 3's `fit` does not run under `tf.distribute.MultiWorkerMirroredStrategy`
(keras-team/keras#20585, open as of Keras 3.15):

1. `_maybe_symbolic_build` eagerly reduces the first distributed input batch
   (`strategy.reduce("MEAN", batch)`) to build the model from data, which fails on
   string features and on the per-replica dicts tfmtl's pipelines give. A
   `MultiTaskModel` is built from its FeatureSpec at construction and its optimizer
   at `compile`, so there is nothing left to build: the step is skipped.
2. `reduce_per_replica` reduces the step's logs with `strategy.reduce("MEAN", v,
   axis=0)` in multi-worker mode, which fails on scalars (every log is one). Each
   scalar log is given to it as a one-element vector instead, whose mean over
   axis 0 is the same mean over replicas that MirroredStrategy's logs get.

Both are in one mixin, `MultiWorkerFitWorkaround`, that `MultiTaskModel` inherits;
nothing is patched in Keras itself, and nothing changes on one device, under
MirroredStrategy or under TPUStrategy except that (1) also skips a build that has
nothing to do. `tests/test_distribute.py` runs Keras without each point on two
workers and fails once a Keras release no longer needs it: then set that point's
release in `FIXED_IN`, and the point is skipped from that release on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

KERAS_ISSUE = "https://github.com/keras-team/keras/issues/20585"
# Per point, the first Keras release that no longer needs it; None while every release
# tried (up to 3.15.1) does.
FIXED_IN: dict[str, str | None] = {"symbolic_build": None, "scalar_logs": None}


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("+")[0].split(".")[:3] if part.isdigit())


def needed(point: str, keras_version: str | None = None) -> bool:
    """Whether this Keras release needs `point` ("symbolic_build" or "scalar_logs") worked around."""
    fixed_in = FIXED_IN[point]
    return fixed_in is None or _release(keras_version or keras.__version__) < _release(fixed_in)


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` is a MultiWorkerMirroredStrategy over more than one worker."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def _scalars_as_vectors(step_function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def step(data: Any) -> Any:
        return tf.nest.map_structure(
            lambda value: value[None] if tf.is_tensor(value) and value.shape.rank == 0 else value, step_function(data)
        )

    return step


class MultiWorkerFitWorkaround:
    """Mixin for a `keras.Model` built before `fit` that makes `fit`/`evaluate` run on several workers."""

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        if needed("symbolic_build") and self.built and self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _make_function(self, step_function: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if needed("scalar_logs") and in_multi_worker_mode(self.distribute_strategy):
            step_function = _scalars_as_vectors(step_function)
        return super()._make_function(step_function)
