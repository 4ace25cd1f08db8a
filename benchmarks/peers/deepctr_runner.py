"""DeepCTR 0.9.4's side of `compare_peers.py`: its MMOE, SharedBottom or PLE at the reference sizes.

Runs in DeepCTR's own virtual environment (it needs Keras 2, TensorFlow <= 2.15):

    python -m venv /tmp/deepctr-venv
    /tmp/deepctr-venv/bin/pip install deepctr==0.9.4 "tensorflow-cpu==2.15.*"
    /tmp/deepctr-venv/bin/python benchmarks/peers/deepctr_runner.py --data DIR --model mmoe --seed 1

Inputs are the shared encoded arrays (category ids, standardised numbers), one
`SparseFeat` of the reference embedding size per categorical and one `DenseFeat`
per number, as in DeepCTR's examples. Embedding L2 regularisation is set to 0
(DeepCTR's default is 1e-5) so that every system minimises the same loss: the sum
of the tasks' binary cross-entropies, with Adam. Fit time is `model.fit` on the
in-memory arrays; predict time is the second of two `model.predict` calls over
the test set (the first, with tracing, is reported as `predict_cold_seconds`).
"""

from __future__ import annotations

from common import Stopwatch, encoded_arrays, finish, model_settings, quiet, start, timed_twice

quiet()

import deepctr  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from deepctr.feature_column import DenseFeat, SparseFeat  # noqa: E402
from deepctr.models.multitask import MMOE, PLE, SharedBottom  # noqa: E402


def build(model: str, settings: dict, columns: list, tasks: list[str], seed: int) -> tf.keras.Model:
    common = dict(tower_dnn_hidden_units=tuple(settings["tower_units"]), l2_reg_embedding=0.0, seed=seed,
                  task_types=("binary",) * len(tasks), task_names=tuple(tasks))
    if model == "mmoe":
        return MMOE(columns, num_experts=settings["num_experts"],
                    expert_dnn_hidden_units=tuple(settings["expert_units"]), **common)
    if model == "shared-bottom":
        return SharedBottom(columns, bottom_dnn_hidden_units=tuple(settings["bottom_units"]), **common)
    return PLE(columns, shared_expert_num=settings["num_shared_experts"],
               specific_expert_num=settings["num_task_experts"], num_levels=settings["num_levels"],
               expert_dnn_hidden_units=tuple(settings["expert_units"]), **common)


def main() -> None:
    args, meta = start(__doc__.splitlines()[0])
    train_x, train_y, test_x, _ = encoded_arrays(args.data, len(args.tasks))
    tf.random.set_seed(args.seed)
    dim = meta["embedding_dim"]
    columns = [SparseFeat(name, vocabulary_size=size, embedding_dim=dim) for name, size in meta["categorical"].items()]
    columns += [DenseFeat(name, 1) for name in meta["numeric"]]
    with Stopwatch() as built:
        model = build(args.model, model_settings(args, meta), columns, args.tasks, args.seed)
        model.compile(optimizer=tf.keras.optimizers.Adam(meta["training"]["learning_rate"]),
                      loss=["binary_crossentropy"] * len(args.tasks))
    labels = [train_y[:, i].astype(np.float32) for i in range(len(args.tasks))]
    with Stopwatch() as fit:
        model.fit(train_x, labels, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0)
    result = {
        "system": "deepctr",
        "versions": {"deepctr": deepctr.__version__, "tensorflow": tf.__version__},
        "build_seconds": built.seconds,
        "fit_seconds": fit.seconds,
    }
    predictions = None
    if not args.skip_predict:
        outputs, seconds = timed_twice(lambda: model.predict(test_x, batch_size=args.predict_batch_size, verbose=0))
        outputs = outputs if isinstance(outputs, list) else [outputs]
        predictions = np.column_stack([np.ravel(o) for o in outputs])
        result.update(seconds)
    finish(args, result, predictions, len(train_y), len(next(iter(test_x.values()))))


if __name__ == "__main__":
    main()
