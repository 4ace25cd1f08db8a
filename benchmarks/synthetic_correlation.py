"""The MMoE paper's synthetic experiment: test loss against task correlation, per model.

On `tfmtl.datasets.synthetic_correlated` (two regression tasks whose task weights have
cosine `p`; Ma et al., KDD 2018, section 4) trains SharedBottom, OMoE, MMoE and PLE at
each correlation and seed, and reports the test loss (mean squared error, averaged over
the two tasks). The models are sized as in the paper: experts of 16 units (8 of them;
PLE 4 shared + 2 per task), towers of 8, and a 113-unit shared bottom of about the
same size. Every model is trained to convergence under one protocol: the last
`--validation-fraction` of the training rows is held out, the learning rate halves when
the validation loss stalls (improves by less than 1e-4) for 2 epochs, and training
stops when it stalls for `--patience` epochs, restoring the best weights. With several
`--learning-rates` each model trains at each, and the run with the lowest validation loss counts
(the paper searched each model's learning rate; the test rows play no part). The label
noise sets a floor of 0.01 on the test MSE. The paper compared loss curves during
training, which measures how fast each model learns rather than where it ends: the
same runs also record the test loss after each of `--budget-epochs` epochs. Writes
Markdown tables (converged, then per budget, with the mean epochs trained) and a PNG
plot of test loss against correlation.

Needs matplotlib, a benchmark-only dependency: `pip install matplotlib`.

    python benchmarks/synthetic_correlation.py --out benchmarks/results/synthetic_correlation.md \
        [--correlations 0.5 0.7 0.9 1.0] [--seeds 1 2 3] [--train-rows 50000] [--max-epochs 60] [--budget-epochs 1 3] \
        [--learning-rates 0.001 0.003 0.01]
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
from tfmtl.zoo import MMoE, OMoE, PLE, SharedBottom  # noqa: E402

MODELS = {
    "SharedBottom": lambda f, t: SharedBottom(f, t, bottom_units=[113], tower_units=[8]),
    "OMoE": lambda f, t: OMoE(f, t, num_experts=8, expert_units=[16], tower_units=[8]),
    "MMoE": lambda f, t: MMoE(f, t, num_experts=8, expert_units=[16], tower_units=[8]),
    "PLE": lambda f, t: PLE(f, t, num_shared_experts=4, num_task_experts=2, expert_units=[16], tower_units=[8]),
}
TASKS = [tfmtl.Task("y1", "regression"), tfmtl.Task("y2", "regression")]


class TestLossAtEpochs(keras.callbacks.Callback):
    """Records the test loss (MSE, mean of the two tasks) at the end of the given epochs (1-based)."""

    def __init__(self, test_data: object, epochs: list[int]) -> None:
        super().__init__()
        self.test_data, self.epochs, self.losses = test_data, set(epochs), {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 in self.epochs:
            scores = self.model.evaluate(self.test_data, return_dict=True, verbose=0)
            self.losses[epoch + 1] = (scores["y1_loss"] + scores["y2_loss"]) / 2


def test_loss(
    model_name: str, correlation: float, seed: int, args: argparse.Namespace
) -> tuple[float, int, dict, float]:
    """Trains one model to convergence at each of `args.learning_rates` and keeps the best on validation.

    Returns the kept run's test loss, the epochs it trained, its test losses at the
    budgets, and its learning rate. The MMoE paper searched each model's learning rate
    the same way; the test rows play no part in the choice.
    """
    rows, test = tfmtl.datasets.synthetic_correlated(
        correlation, num_train=args.train_rows, num_test=args.test_rows, seed=seed
    )
    # Rows are i.i.d., so the last ones are as good a validation sample as any.
    held_out = int(len(rows) * args.validation_fraction)
    train, validation = rows.iloc[:-held_out], rows.iloc[-held_out:]
    features = tfmtl.FeatureSpec.infer(train, exclude=["y1", "y2"])
    data = tfmtl.data.dataset(train, features, TASKS, batch_size=args.batch_size, shuffle=True, seed=seed)
    validation_data = tfmtl.data.dataset(validation, features, TASKS, batch_size=4096)
    test_data = tfmtl.data.dataset(test, features, TASKS, batch_size=4096)
    runs = []
    for learning_rate in args.learning_rates:
        keras.utils.set_random_seed(seed)
        model = MODELS[model_name](features, TASKS)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), steps_per_execution=16)
        at_budgets = TestLossAtEpochs(test_data, args.budget_epochs)
        # An epoch counts as better when the validation loss (sum of the two tasks' MSE) drops by 1e-4.
        callbacks = [
            at_budgets,
            keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=1e-4),
            keras.callbacks.EarlyStopping(patience=args.patience, min_delta=1e-4, restore_best_weights=True),
        ]
        history = model.fit(
            data, validation_data=validation_data, epochs=args.max_epochs, callbacks=callbacks, verbose=0
        )
        validated = model.evaluate(validation_data, return_dict=True, verbose=0)["loss"]
        scores = model.evaluate(test_data, return_dict=True, verbose=0)
        loss = (scores["y1_loss"] + scores["y2_loss"]) / 2
        runs.append((validated, loss, len(history.history["loss"]), at_budgets.losses, learning_rate))
    return min(runs, key=lambda run: run[0])[1:]


def table(results: dict, correlations: list[float], epochs: dict | None = None) -> list[str]:
    """Markdown rows: test loss mean ± std per model and correlation (and the mean epochs trained)."""
    lines = ["| model | " + " | ".join(f"p = {c}" for c in correlations) + (" | mean epochs |" if epochs else " |")]
    lines.append("|---" * (len(correlations) + 1 + bool(epochs)) + "|")
    for name, by_correlation in results.items():
        cells = []
        for c in correlations:
            values = by_correlation[c]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} ± {std:.4f}")
        if epochs:
            trained = [e for by_seed in epochs[name].values() for e in by_seed]
            cells.append(f"{statistics.mean(trained):.0f} (max {max(trained)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def paired_table(results: dict, correlations: list[float], baseline: str) -> list[str]:
    """Markdown rows: each model's test loss minus the baseline's on the same data (same seed).

    Every seed draws one data set that all models train on, so the per-seed
    difference removes the data's share of the variation between seeds.
    """
    lines = ["| model - " + baseline + " | " + " | ".join(f"p = {c}" for c in correlations) + " |"]
    lines.append("|---" * (len(correlations) + 1) + "|")
    for name, by_correlation in results.items():
        if name == baseline:
            continue
        cells = []
        for c in correlations:
            differences = [a - b for a, b in zip(by_correlation[c], results[baseline][c])]
            std = statistics.stdev(differences) if len(differences) > 1 else 0.0
            below = sum(d < 0 for d in differences)
            cells.append(f"{statistics.mean(differences):+.4f} ± {std:.4f} (lower in {below}/{len(differences)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def learning_rate_table(chosen: dict, learning_rates: list[float]) -> list[str]:
    """Markdown rows: per model, how many of its runs kept each learning rate."""
    lines = ["| model | " + " | ".join(f"{rate}" for rate in learning_rates) + " |"]
    lines.append("|---" * (len(learning_rates) + 1) + "|")
    for name, by_correlation in chosen.items():
        kept = [rate for rates in by_correlation.values() for rate in rates]
        lines.append(f"| {name} | " + " | ".join(str(kept.count(rate)) for rate in learning_rates) + " |")
    return lines


def plot(results: dict, correlations: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, by_correlation in results.items():
        means = [statistics.mean(by_correlation[c]) for c in correlations]
        stds = [statistics.stdev(by_correlation[c]) if len(by_correlation[c]) > 1 else 0.0 for c in correlations]
        axes.errorbar(correlations, means, yerr=stds, marker="o", capsize=3, label=name)
    axes.set_xlabel("task correlation (cosine of the task weights)")
    axes.set_ylabel("test loss (MSE, mean of the two tasks)")
    axes.set_title("synthetic_correlated: test loss vs. correlation")
    axes.legend()
    figure.tight_layout()
    tfmtl.data.write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Markdown file to write; the plot goes beside it (.png)")
    parser.add_argument("--correlations", type=float, nargs="+", default=[0.5, 0.7, 0.9, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--max-epochs", type=int, default=60, help="epoch budget; early stopping usually ends sooner")
    parser.add_argument("--patience", type=int, default=5, help="epochs without a better validation loss, then stop")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[3e-3],
                        help="Adam's initial learning rate; with several, each run keeps the best on validation")
    parser.add_argument("--train-rows", type=int, default=50_000, help="rows generated for training and validation")
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--test-rows", type=int, default=10_000)
    parser.add_argument("--budget-epochs", type=int, nargs="*", default=[1, 3],
                        help="also report the test loss after these epochs (the paper's view: how fast models learn)")
    args = parser.parse_args()
    if not 0 < args.validation_fraction < 1:
        parser.error(f"--validation-fraction: expected a fraction in (0, 1), got {args.validation_fraction}")
    started = time.perf_counter()
    results = {name: {c: [] for c in args.correlations} for name in args.models}
    epochs = {name: {c: [] for c in args.correlations} for name in args.models}
    budgets = {b: {name: {c: [] for c in args.correlations} for name in args.models} for b in args.budget_epochs}
    chosen = {name: {c: [] for c in args.correlations} for name in args.models}
    for correlation in args.correlations:
        for seed in args.seeds:
            for name in args.models:
                loss, trained, at_budgets, learning_rate = test_loss(name, correlation, seed, args)
                results[name][correlation].append(loss)
                epochs[name][correlation].append(trained)
                chosen[name][correlation].append(learning_rate)
                for budget, budget_loss in at_budgets.items():
                    budgets[budget][name][correlation].append(budget_loss)
                run = f"p={correlation} seed={seed} {name}: {loss:.4f}, {trained} epochs, Adam {learning_rate}"
                print(run, flush=True)
    lines = table(results, args.correlations, epochs)
    if "SharedBottom" in results and len(results) > 1:
        lines += ["", "Paired by seed (same data), each model's test loss minus SharedBottom's:", "",
                  *paired_table(results, args.correlations, "SharedBottom")]
    if len(args.learning_rates) > 1:
        lines += ["", "Learning rates kept on validation, per model (how many runs each):", "",
                  *learning_rate_table(chosen, args.learning_rates)]
    budget_sections = []
    for budget, by_model in budgets.items():
        heading = f"Test loss after {budget} epoch(s), in the same runs:"
        budget_sections += [heading, "", *table(by_model, args.correlations), ""]
    out = Path(args.out)
    rates = str(args.learning_rates[0])
    if len(args.learning_rates) > 1:
        rates = " or ".join(map(str, args.learning_rates)) + " (per run, the one with the lowest validation loss)"
    command = "python benchmarks/synthetic_correlation.py " + " ".join(sys.argv[1:])
    report = "\n".join(
        [
            f"# Test loss against task correlation on synthetic_correlated ({len(args.seeds)} seed(s))",
            "",
            f"{args.train_rows} training rows ({args.validation_fraction:.0%} held out for validation) and "
            f"{args.test_rows} test rows per data set (seeded by the run's seed); batch {args.batch_size}, Adam "
            f"{rates} halved after 2 epochs without a validation loss 1e-4 lower, early stopping after "
            f"{args.patience} (best weights restored, at most {args.max_epochs} epochs). Test MSE averaged over "
            "the two tasks, mean ± std over seeds; the label noise alone gives 0.01.",
            "",
            *lines,
            "",
            *budget_sections,
            f"![test loss against correlation]({out.with_suffix('.png').name})",
            "",
            f"Command: `{command}` ({time.perf_counter() - started:.0f} s on {platform.machine()}, "
            f"{os.cpu_count()} CPU cores shared with other jobs).",
            "",
        ]
    )
    print(report)
    tfmtl.data.write_atomically(out, lambda path: Path(path).write_text(report))
    tfmtl.data.write_json(
        out.with_suffix(".json"),
        {"command": command, "test_loss": results, "epochs": epochs, "test_loss_after_epochs": budgets,
         "learning_rate": chosen},
    )
    plot(results, args.correlations, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
