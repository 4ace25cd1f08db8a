"""Task-weighting strategies side by side: per-task test quality and step time relative to static weighting.

Trains every strategy of `tfmtl.weighting.STRATEGIES` on two set-ups and writes one
Markdown table per set-up (and the raw runs as JSON beside it):

- Census-Income with the MMoE reference configuration (`zoo/census-income/mmoe.toml`:
  embeddings of 8, 8 experts of 64, towers of 32, Adam 1e-3, batch 1024, 2 epochs,
  16 steps per execution), per-task test AUC; `--census-fraction` trains on a seeded
  fraction of the training rows (the test file is always whole).
- `tfmtl.datasets.synthetic_correlated` (Ma et al., 2018; task correlation
  `--correlation`) with the MMoE of the paper's synthetic experiment (8 experts of 16,
  towers of 8), per-task test MSE.

Quality is mean ± std over seeds. Step time is measured in the same run for every
strategy, interleaved (for each seed, every strategy in turn, each round starting one
strategy later in the list), so that load from other jobs on a shared machine falls on
all strategies alike. It is given relative to static weighting in the same seed round,
averaged over seeds, as CPU time per step (`time.process_time`, all of this process's
threads) and wall time per step, both around the whole `fit` (graph tracing included)
and over the epochs after the first (steady state, no tracing).

    python benchmarks/weighting.py --out benchmarks/results/weighting.md \
        [--seeds 1 2 3] [--census-fraction 1.0] [--strategies static pcgrad ...] [--setups census synthetic]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tf.data pipelines have no known length, so Keras warns at each epoch's end; every epoch still runs.
warnings.filterwarnings("ignore", message="Your input ran out of data")

import keras  # noqa: E402

import tfmtl  # noqa: E402
from tfmtl.cli.recipe import resolve  # noqa: E402
from tfmtl.cli.train import make_features, make_model, make_tasks  # noqa: E402
from tfmtl.weighting import STRATEGIES  # noqa: E402


class StepClock(keras.callbacks.Callback):
    """CPU and wall time of each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[tuple[float, float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = (time.process_time(), time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        cpu, wall = self._started
        self.epochs.append((time.process_time() - cpu, time.perf_counter() - wall))


def census_setup(seed: int, fraction: float):
    train, test = tfmtl.datasets.census_income()
    if fraction < 1.0:
        train = train.sample(frac=fraction, random_state=seed).reset_index(drop=True)
    config = resolve(None, {"model": "mmoe", "dataset": "census-income", "training": {"seed": seed}})
    tasks = make_tasks(config, train)
    features = make_features(config, train, tasks)
    training = config["training"]

    def model() -> tfmtl.zoo.MultiTaskModel:
        return make_model(config, features, tasks)

    return train, test, features, tasks, model, training, "auc"


def synthetic_setup(seed: int, correlation: float, rows: int, epochs: int):
    train, test = tfmtl.datasets.synthetic_correlated(correlation, num_train=rows, seed=seed)
    tasks = [tfmtl.Task("y1", "regression"), tfmtl.Task("y2", "regression")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["y1", "y2"])

    def model() -> tfmtl.zoo.MultiTaskModel:
        return tfmtl.zoo.MMoE(features, tasks, num_experts=8, expert_units=[16], tower_units=[8])

    training = {"epochs": epochs, "batch_size": 128, "learning_rate": 1e-3, "steps_per_execution": 16}
    return train, test, features, tasks, model, training, "loss"


def run(strategy: str, seed: int, setup: tuple) -> dict:
    train, test, features, tasks, make, training, metric = setup
    keras.utils.set_random_seed(seed)
    model = make()
    model.compile(
        optimizer=keras.optimizers.Adam(training["learning_rate"]),
        weighting=strategy,
        steps_per_execution=training["steps_per_execution"],
    )
    data = tfmtl.data.dataset(train, features, tasks, batch_size=training["batch_size"], shuffle=True, seed=seed)
    clock = StepClock()
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(data, epochs=training["epochs"], verbose=0, callbacks=[clock])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    steps_per_epoch = -(-len(train) // training["batch_size"])
    steady_steps = steps_per_epoch * (training["epochs"] - 1)
    scores = model.evaluate(
        tfmtl.data.dataset(test, features, tasks, batch_size=8192), return_dict=True, verbose=0
    )  # fmt: skip
    return {
        "strategy": strategy,
        "seed": seed,
        **{task.name: scores[f"{task.name}_{metric}"] for task in tasks},
        "cpu_per_step": cpu / (steps_per_epoch * training["epochs"]),
        "wall_per_step": wall / (steps_per_epoch * training["epochs"]),
        "steady_cpu_per_step": sum(c for c, _ in clock.epochs[1:]) / steady_steps if steady_steps else None,
        "steady_wall_per_step": sum(w for _, w in clock.epochs[1:]) / steady_steps if steady_steps else None,
    }


def mean_std(values: list[float], digits: int) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def relative(runs: list[dict], strategy: str, key: str) -> str:
    """Mean over seeds of this strategy's time per step divided by static's in the same seed round."""
    static = {r["seed"]: r[key] for r in runs if r["strategy"] == "static"}
    mine = [r for r in runs if r["strategy"] == strategy and r[key] and static.get(r["seed"])]
    ratios = [r[key] / static[r["seed"]] for r in mine]
    return f"{statistics.mean(ratios):.2f}x" if ratios else "n/a"


def table(runs: list[dict], strategies: list[str], task_names: list[str], metric: str) -> list[str]:
    digits = 4
    lines = [
        "| strategy | `--weighting` | "
        + " | ".join(f"{name} {metric}" for name in task_names)
        + " | CPU/step, steady | wall/step, steady | CPU/step, whole fit | wall/step, whole fit"
        + " | static ms/step (CPU, steady) |",
        "|---|---|" + "---|" * len(task_names) + "---|---|---|---|---|",
    ]
    for strategy in strategies:
        mine = [r for r in runs if r["strategy"] == strategy]
        quality = [mean_std([r[name] for r in mine], digits) for name in task_names]
        times = [
            relative(runs, strategy, key)
            for key in ("steady_cpu_per_step", "steady_wall_per_step", "cpu_per_step", "wall_per_step")
        ]
        static_ms = ""
        if strategy == "static":
            static_ms = f"{1000 * statistics.mean(r['steady_cpu_per_step'] or r['cpu_per_step'] for r in mine):.1f}"
        lines.append(
            f"| {STRATEGIES[strategy].__name__} | `{strategy}` | " + " | ".join(quality + times) + f" | {static_ms} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Markdown file to write (the runs go beside it as .json)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--setups", nargs="+", default=["census", "synthetic"], choices=["census", "synthetic"])
    parser.add_argument("--census-fraction", type=float, default=1.0, help="fraction of the training rows")
    parser.add_argument("--correlation", type=float, default=0.5, help="synthetic_correlated task correlation")
    parser.add_argument("--synthetic-rows", type=int, default=10_000)
    parser.add_argument("--synthetic-epochs", type=int, default=10)
    args = parser.parse_args()
    strategies = ["static"] + [s for s in args.strategies if s != "static"]  # the reference heads the table
    started = time.perf_counter()
    load_before = os.getloadavg()
    sections, raw = [], {}
    for setup_name in args.setups:
        runs = []
        for round_index, seed in enumerate(args.seeds):
            if setup_name == "census":
                setup = census_setup(seed, args.census_fraction)
            else:
                setup = synthetic_setup(seed, args.correlation, args.synthetic_rows, args.synthetic_epochs)
            # Each round starts with a different strategy, so no strategy always runs first (cold caches, load).
            start = round_index % len(strategies)
            for strategy in strategies[start:] + strategies[:start]:
                runs.append(run(strategy, seed, setup))
                print({k: round(v, 5) if isinstance(v, float) else v for k, v in runs[-1].items()}, flush=True)
        task_names = [task.name for task in setup[3]]
        metric = "test AUC" if setup_name == "census" else "test MSE"
        training = setup[5]
        if setup_name == "census":
            title = (
                f"## Census-Income, MMoE reference configuration ({args.census_fraction:.0%} of the "
                f"{199_523:,} training rows, the whole test file; {len(args.seeds)} seed(s))"
            )
        else:
            title = (
                f"## synthetic_correlated, correlation {args.correlation}, MMoE 8 x 16, towers 8 "
                f"({args.synthetic_rows:,} training rows, {training['epochs']} epochs, batch 128, "
                f"Adam 1e-3; {len(args.seeds)} seed(s))"
            )
        sections += [title, "", *table(runs, strategies, task_names, metric), ""]
        raw[setup_name] = runs
    command = "python benchmarks/weighting.py " + " ".join(sys.argv[1:])
    load_after = os.getloadavg()
    report = "\n".join(
        [
            "# Task-weighting strategies: quality and step time relative to static weighting",
            "",
            "Quality: mean ± std over seeds. Step time: this strategy's time per training step over static's in",
            "the same seed round, mean over seeds; CPU is `time.process_time` (all threads of the process),",
            "steady is the epochs after the first (no graph tracing), whole fit includes tracing. Strategies ran",
            "interleaved, every strategy once per seed in turn, each round starting one strategy later.",
            "",
            *sections,
            f"Command: `{command}` ({time.perf_counter() - started:.0f} s wall on {platform.machine()}, "
            f"{os.cpu_count()} CPU cores shared with other jobs: load average {load_before[0]:.1f} at the start, "
            f"{load_after[0]:.1f} at the end). Wall times especially are noisy on a shared machine.",
            "",
        ]
    )
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tfmtl.data.write_atomically(out, lambda path: Path(path).write_text(report))
    tfmtl.data.write_json(out.with_suffix(".json"), {"command": command, "runs": raw})


if __name__ == "__main__":
    main()
