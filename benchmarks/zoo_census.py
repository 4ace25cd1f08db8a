"""Every zoo model on Census-Income: test AUC (mean ± std over seeds) and training throughput.

Each model trains its shipped recipe (`zoo/census-income/<model>.toml`: embeddings of
8, Adam 1e-3, batch 1024, 2 epochs, towers of 32) on the bundled 199,523 training rows
and is tested on the 99,762 test rows, once per seed. Throughput is training examples
per second of the whole `fit` (graph tracing included) and of the last epoch alone.

    python benchmarks/zoo_census.py --out benchmarks/results/zoo_census.md [--seeds 1 2 3] \
        [--models ple mmoe ...] [--rows N]

Writes a Markdown table (and the per-run figures as JSON next to it, `.json`). A
script, not a test: on shared machines the throughput is noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402

import tfmtl  # noqa: E402
from train_throughput import run  # noqa: E402

COLUMNS = [
    ("income_auc", "income AUC", 4),
    ("marital_auc", "marital AUC", 4),
    ("fit_examples_per_second", "train examples/s (whole fit)", 0),
    ("last_epoch_examples_per_second", "train examples/s (last epoch)", 0),
]


def mean_std(values: list[float], digits: int) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| model | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for model, runs in results.items():
        cells = [mean_std([r[key] for r in runs], digits) for key, _, digits in COLUMNS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Markdown file to write")
    parser.add_argument("--models", nargs="+", default=list(tfmtl.zoo.MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rows", type=int, help="use only the first ROWS training and test rows (smoke runs)")
    args = parser.parse_args()
    train, test = tfmtl.datasets.census_income()
    if args.rows:
        train, test = train.head(args.rows), test.head(args.rows)
    results: dict[str, list[dict]] = {}
    for model in args.models:
        results[model] = []
        for seed in args.seeds:
            results[model].append(run(model, seed, train, test))
            print(model, results[model][-1], flush=True)
    command = "python benchmarks/zoo_census.py " + " ".join(sys.argv[1:])
    report = "\n".join(
        [
            f"# Zoo on Census-Income ({len(args.seeds)} seed(s): {', '.join(map(str, args.seeds))})",
            "",
            f"{len(train)} training rows, {len(test)} test rows; each model's shipped recipe "
            "(zoo/census-income/<model>.toml). AUC and throughput as mean ± std over seeds.",
            "",
            table(results),
            "",
            f"Command: `{command}`",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs while measured); "
            f"TensorFlow {__import__('tensorflow').__version__}, Keras {keras.__version__}.",
            "",
        ]
    )
    print(report)
    out = Path(args.out)
    tfmtl.data.write_atomically(out, lambda path: Path(path).write_text(report))
    tfmtl.data.write_json(out.with_suffix(".json"), {"command": command, "runs": results})


if __name__ == "__main__":
    main()
