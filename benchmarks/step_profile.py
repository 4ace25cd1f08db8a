"""Where a training step of the reference MMoE spends its time, piece by piece, against the matmul limit.

Issue 8 asks, where the speed target is not reached, for what limits it. This script
answers with one table: examples/second of whole passes over Census-Income (one
`tf.function` looping over the dataset, so no Keras `fit` overhead) for cumulative
pieces of the step, then the same step under `fit`:

- `forward`: the model's task logits and a summed log loss;
- `forward + backward`: plus the gradients of every trainable variable;
- `+ Adam`: plus the optimizer update (a whole training step without metrics);
- `train_step`: tfmtl's full step (label masks, weighting, metrics);
- `train_step, XLA`: the same step compiled with XLA;
- `fit`: `model.fit` for one epoch (steps_per_execution of the shipped recipe);

and the expert layer's three matmuls alone (forward, input and weight gradients at
the batch's shape, measured at the same time) as the floor the arithmetic sets.
Every variant is timed over `--repeats` passes, after one warm-up pass; the table
gives the best and the median. Writes `step_profile.md` and `.json` to `--out-dir`.

    python benchmarks/step_profile.py [--repeats 3] [--batch-size 1024] [--rows N] [--out-dir benchmarks/results]

A script, not a test: timings on shared machines are noisy, so compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmtl  # noqa: E402
from tfmtl.data import write_atomically, write_json  # noqa: E402
from tfmtl.zoo import MMoE  # noqa: E402

TASKS = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]


def reference_model(features: tfmtl.FeatureSpec) -> MMoE:
    keras.utils.set_random_seed(1)
    model = MMoE(features, TASKS, num_experts=8, expert_units=[64], tower_units=[32])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=16)
    return model


def summed_log_loss(model: MMoE, x: dict, y: dict) -> tf.Tensor:
    logits = model.task_logits(x, training=True)
    return tf.add_n([
        tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(tf.reshape(tf.cast(y[t.name], tf.float32), [-1]), z))
        for t, z in zip(TASKS, logits)
    ])


def step_variants(model: MMoE) -> dict[str, Callable]:
    """Each variant returns a scalar that depends on all its work, so none of it is pruned from the graph."""

    def gradients(x: dict, y: dict) -> tuple:
        with tf.GradientTape() as tape:
            loss = summed_log_loss(model, x, y)
        return loss, [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]

    def backward(batch: tuple) -> tf.Tensor:
        loss, grads = gradients(*batch[:2])
        return loss + tf.add_n([tf.reduce_sum(g) for g in grads])

    def adam(batch: tuple) -> tf.Tensor:
        loss, grads = gradients(*batch[:2])
        model.optimizer.apply(grads, model.trainable_variables)
        return loss

    @tf.autograph.experimental.do_not_convert
    def train_step(batch: tuple) -> tf.Tensor:
        return tf.cast(model.train_step(batch)["loss"], tf.float32)

    return {
        "forward": lambda batch: summed_log_loss(model, *batch[:2]),
        "forward + backward": backward,
        "+ Adam": adam,
        "train_step": train_step,
        "train_step, XLA": tf.function(train_step, jit_compile=True),
    }


def passes_per_second(run_pass: Callable[[], object], repeats: int) -> list[float]:
    run_pass()  # tracing and compiling
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_pass()
        seconds.append(time.perf_counter() - start)
    return seconds


def expert_matmul_seconds(batch: int, width: int, experts_width: int, repeats: int) -> float:
    """Seconds per batch of the expert layer's forward, input-gradient and weight-gradient matmuls."""
    x = tf.random.normal([batch, width])
    w = tf.random.normal([width, experts_width])
    dh = tf.random.normal([batch, experts_width])

    @tf.function
    def three(x: tf.Tensor, w: tf.Tensor, dh: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for _ in tf.range(50):
            h = tf.linalg.matmul(x, w)
            dx = tf.linalg.matmul(dh, w, transpose_b=True)
            dw = tf.linalg.matmul(x, dh, transpose_a=True)
            total += h[0, 0] + dx[0, 0] + dw[0, 0]
        return total

    return min(passes_per_second(lambda: three(x, w, dh).numpy(), repeats)) / 50


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--rows", type=int, default=None, help="train on the first N rows only (for a quick check)")
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)

    train, _ = tfmtl.datasets.census_income()
    if args.rows:
        train = train.head(args.rows)
    features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    data = tfmtl.data.dataset(train, features, TASKS, batch_size=args.batch_size, shuffle=True, seed=1)
    rows = []
    for name in step_variants(reference_model(features)):
        model = reference_model(features)  # fresh weights and optimizer state for every variant
        step = step_variants(model)[name]

        @tf.function
        def one_pass(dataset: tf.data.Dataset, step: Callable = step) -> tf.Tensor:
            total = tf.constant(0.0)
            for batch in dataset:
                total += step(batch)
            return total

        rows.append((name, passes_per_second(lambda: one_pass(data).numpy(), args.repeats)))
        print(f"{name}: done", file=sys.stderr, flush=True)
    fit_model = reference_model(features)
    rows.append(("fit (1 epoch)", passes_per_second(lambda: fit_model.fit(data, epochs=1, verbose=0), args.repeats)))

    width = fit_model.encoder.output_dim
    matmul = expert_matmul_seconds(args.batch_size, width, 8 * 64, args.repeats)
    flops = 3 * 2 * args.batch_size * width * 8 * 64
    batches = -(-len(train) // args.batch_size)
    lines = [
        f"# One training step of the reference MMoE, piece by piece ({len(train):,} rows, batch {args.batch_size})",
        "",
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores. Examples/second of whole "
        f"passes, best and median of {args.repeats}; `python benchmarks/step_profile.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`.",
        "",
        "| step | best ex/s | median ex/s | µs per example (best) |",
        "| --- | ---: | ---: | ---: |",
    ]
    results = {}
    for name, seconds in rows:
        best, median = len(train) / min(seconds), len(train) / statistics.median(seconds)
        results[name] = {"seconds": seconds, "best_examples_per_second": best}
        lines.append(f"| {name} | {best:,.0f} | {median:,.0f} | {1e6 / best:.1f} |")
    floor = len(train) / (matmul * batches)
    lines += [
        f"| expert matmuls alone ({args.batch_size}x{width} @ {width}x512, its two gradients) | {floor:,.0f} | | "
        f"{1e6 / floor:.1f} |",
        "",
        f"The expert layer's three matmuls run at {flops / matmul / 1e9:.0f} GFLOP/s here; they are "
        f"{3 * 2 * width * 512 / 1e6:.2f} MFLOP of the step's arithmetic per example.",
    ]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "step_profile.md", lambda path: Path(path).write_text("\n".join(lines) + "\n"))
    write_json(out_dir / "step_profile.json", {"rows": len(train), "batch_size": args.batch_size,
                                               "variants": results, "expert_matmul_seconds": matmul})
    print("\n".join(lines))
    return out_dir / "step_profile.md"


if __name__ == "__main__":
    main()
