"""A search on Census-Income with a stated budget, then the best recipe retrained on all the data beside the reference MMoE.

Budget: `--max-trials` trials x `--epochs` epochs x `--data-fraction` of the search rows
(the training file less 20 % held out to score trials; the test file is never read by
the search). Then `tfmtl train --recipe` reruns the best recipe the search wrote, on the
whole training file, and `zoo/census-income/mmoe.toml` (the reference MMoE) the same
way; both are tested on the test file.

    python benchmarks/tune_census.py [--tuner pso] [--max-trials 12] [--epochs 2] [--data-fraction 0.1] \
        [--out runs/tune-census] [--results benchmarks/results/tune_census]

A script, not a test: one run, one seed, on whatever machine it runs on; the figures
are what it measured, in whichever direction they go.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfmtl.cli.main import main  # noqa: E402
from tfmtl.data import write_atomically, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    status = main(argv)
    if status != 0:
        raise SystemExit(f"tfmtl {' '.join(argv)} exited with {status}")
    return time.perf_counter() - started


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuner", default="pso")
    parser.add_argument("--max-trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-fraction", type=float, default=0.1)
    parser.add_argument("--out", default="runs/tune-census")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "tune_census"))
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        # `tfmtl tune` would continue the search there: its budget and time would not be this run's.
        parser.error(f"--out: {out} is not empty; the stated budget needs a fresh search folder")
    search_seconds = timed([
        "tune", "--dataset", "census-income", "--tuner", args.tuner, "--max-trials", str(args.max_trials),
        "--epochs", str(args.epochs), "--data-fraction", str(args.data_fraction), "--out", str(out), "--verbose", "1",
    ])  # fmt: skip
    best_recipe = next((out / "zoo" / "census-income").glob("*.toml"))
    leaderboard = (out / "leaderboard.csv").read_text().splitlines()
    runs = {"best": (best_recipe, out / "best"), "reference": (REPO / "zoo" / "census-income" / "mmoe.toml", out / "reference")}
    results = {}
    for name, (recipe, run_dir) in runs.items():
        seconds = timed(["train", "--recipe", str(recipe), "--out", str(run_dir), "--verbose", "0"])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        results[name] = {"recipe": str(recipe), "model": metrics["model"], "test": metrics["tasks"], "seconds": round(seconds, 1)}
    record = {
        "command": "python benchmarks/tune_census.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "results"
        ),
        "budget": {"tuner": args.tuner, "trials": args.max_trials, "epochs": args.epochs, "data_fraction": args.data_fraction},
        "search_seconds": round(search_seconds, 1),
        "best_trial": dict(zip(leaderboard[0].split(","), leaderboard[1].split(","))),
        "best_recipe": best_recipe.read_text(),
        **results,
    }
    write_json(f"{args.results}.json", record)
    rows = [
        f"| {name} ({r['model']}) | {r['test']['income']['auc']:.4f} | {r['test']['marital']['auc']:.4f} | "
        f"{(r['test']['income']['auc'] + r['test']['marital']['auc']) / 2:.4f} | {r['seconds']:.0f} |"
        for name, r in results.items()
    ]
    table = "\n".join(["| recipe | income AUC | marital AUC | mean AUC | train s |", "|---|---|---|---|---|", *rows])
    text = (
        f"Command: `{record['command']}`\n\nSearch: {args.tuner}, {args.max_trials} trials x {args.epochs} epochs x "
        f"{args.data_fraction:g} of the search rows, {search_seconds:.0f} s.\n\n{table}\n"
    )
    write_atomically(f"{args.results}.md", lambda path: Path(path).write_text(text))
    print(table)


if __name__ == "__main__":
    main_benchmark()
