"""ESMM, AITM and ESCM² on `tfmtl.datasets.synthetic_funnel`, scored against the funnel's ground truth.

`esmm`: trains ESMM with `tfmtl train --model esmm --dataset synthetic-funnel --seed S` (the
shipped recipe, no other flags) and, as the baseline, a single-task CVR model of the same
architecture (the same embeddings and tower) trained only on the clicked training impressions,
with the recipe's optimiser, batch 256 and early stopping on a held-out fifth of the clicked rows
(the best epoch is kept; ESMM gets no early stopping). Reports, mean ± std over seeds:
- the AUC of each model's pCVR against `conversion_if_click` (the conversion each impression
  would have had, had it been clicked) over *all* test impressions: the entire-space CVR quality
  that the clicked-only model's sample-selection bias and data sparsity hurt;
- the AUC on the clicked test impressions only, against the observed conversion;
- how many test examples have pCTCVR > pCTR (ESMM's product makes it 0).

`aitm`: trains AITM with `tfmtl train --model aitm --dataset synthetic-funnel --seed S`
(calibrator on, the recipe's weight) and with `--model-arg calibrator_weight=0` (off), and
reports the share of test examples with p(conversion) > p(click), and the AUCs. `--dense` adds
a funnel where most clicks convert (`rates=[0.1, 0.6]`: about 78 % of them), where breaking the order is
easier, trained from files with the same recipe.

`escm2`: trains ESMM, ESCM² with inverse propensity (`--model escm2`) and ESCM² doubly robust
(`--model escm2 --model-arg counterfactual=dr`) with their shipped recipes, and reports each
pCVR's AUC over all impressions and on clicks, its calibration (mean pCVR over mean true CVR)
and its log loss against the true CVR over all impressions; `--counterfactual-weights W ...` trains
ESCM² at each weight instead of the recipe's.

`--funnel KEY=VALUE` generates the funnel with other `synthetic_funnel` arguments (e.g.
`shared=0.5`) and trains from files with the same recipe.

    python benchmarks/esmm_funnel.py esmm --seeds 1 2 3 --out benchmarks/results/esmm_funnel.md
    python benchmarks/esmm_funnel.py aitm --seeds 1 2 3 --dense --out benchmarks/results/aitm_calibrator.md
    python benchmarks/esmm_funnel.py escm2 --seeds 1 2 3 --out benchmarks/results/escm2_funnel.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# tf.data pipelines have no known length, so Keras warns at each epoch's end; every epoch still runs.
warnings.filterwarnings("ignore", message="Your input ran out of data")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import tfmtl  # noqa: E402
from tfmtl.cli.main import main as tfmtl_main  # noqa: E402
from tfmtl.cli.recipe import load_recipe, shipped_recipe  # noqa: E402
from tfmtl.datasets import funnel_columns, synthetic_funnel  # noqa: E402

DENSE = {"rates": [0.1, 0.6]}


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The exact ROC AUC (Mann-Whitney, ties counted half)."""
    positive = np.asarray(labels) > 0.5
    ranks = pd.Series(np.asarray(scores, np.float64)).rank().to_numpy()
    count = positive.sum()
    return float((ranks[positive].sum() - count * (count + 1) / 2) / (count * (len(positive) - count)))


def funnel(options: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_funnel(**options)


def train_with_cli(model: str, seed: int, options: dict, folder: Path, *flags: str) -> tuple[keras.Model, list[str]]:
    """Trains as `tfmtl train` does with the shipped recipe; returns the model and the command."""
    if options:
        # Another funnel: the recipe's configuration, trained from files.
        train, test = funnel({**options, "ground_truth": False})
        for name, table in (("train", train), ("test", test)):
            table.to_parquet(folder / f"{name}.parquet")
        data = ["--recipe", f"zoo/synthetic-funnel/{model}.toml", "--train-data", str(folder / "train.parquet"), "--test-data", str(folder / "test.parquet")]
    else:
        data = ["--model", model, "--dataset", "synthetic-funnel"]
    argv = ["train", *data, "--seed", str(seed), *flags]
    if tfmtl_main([*argv, "--out", str(folder / "run"), "--verbose", "0"]) != 0:
        raise SystemExit(f"tfmtl {' '.join(argv)} failed")
    return keras.saving.load_model(folder / "run" / "model.keras"), ["tfmtl", *argv]


def predict(model: keras.Model, test: pd.DataFrame) -> dict:
    return model.predict(tfmtl.data.dataset(test, model.feature_spec, batch_size=8192), verbose=0)


def clicked_only_cvr(train: pd.DataFrame, seed: int, recipe: dict) -> keras.Model:
    """The baseline: the recipe's ESMM with one task, conversion, on clicked impressions only."""
    features = tfmtl.FeatureSpec.infer(train, exclude=funnel_columns(), embedding_dim=recipe["features"]["embedding_dim"])
    tasks = [tfmtl.Task("cvr", "binary", label="conversion")]
    clicked = train[train["click"] == 1]
    held_out = clicked.sample(frac=0.2, random_state=seed)
    keras.utils.set_random_seed(seed)
    model = tfmtl.zoo.ESMM(features, tasks, **recipe["model_args"])
    model.compile(optimizer=keras.optimizers.Adam(recipe["training"]["learning_rate"]), steps_per_execution=16)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    model.fit(
        tfmtl.data.dataset(clicked.drop(index=held_out.index), features, tasks, batch_size=256, shuffle=True, seed=seed),
        validation_data=tfmtl.data.dataset(held_out, features, tasks, batch_size=8192),
        epochs=50, callbacks=[stop], verbose=0,
    )  # fmt: skip
    return model


def cvr_scores(test: pd.DataFrame, cvr: np.ndarray) -> dict:
    """pCVR against the funnel's truth over every test impression, and against observed conversions on clicks.

    `calibration` is the mean pCVR over the mean true conversion probability (1 is
    unbiased; ESCM² reports ESMM above 1); `logloss_vs_truth` is the cross-entropy
    of pCVR against the true probabilities, the entire-space CVR loss in expectation.
    """
    truth = test["conversion_probability"].to_numpy(np.float64)
    clicked = test["click"].to_numpy() == 1
    q = np.clip(np.asarray(cvr, np.float64), 1e-7, 1 - 1e-7)
    return {
        "cvr_auc_all_impressions": auc(test["conversion_if_click"].to_numpy(), cvr),
        "cvr_auc_clicked": auc(test["conversion"].to_numpy()[clicked], cvr[clicked]),
        "calibration": float(q.mean() / truth.mean()),
        "logloss_vs_truth": float(np.mean(-truth * np.log(q) - (1 - truth) * np.log1p(-q))),
    }


def mean_std(values: list[float], digits: int = 4) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def esmm_part(args: argparse.Namespace, options: dict, folder: Path) -> tuple[list[str], dict]:
    train, test = funnel(options)
    recipe = load_recipe(shipped_recipe("esmm", "synthetic-funnel"))
    would_convert, clicked = test["conversion_if_click"].to_numpy(), test["click"].to_numpy() == 1
    results: dict = {"esmm": [], "clicked_only": [], "commands": []}
    for seed in args.seeds:
        esmm, command = train_with_cli("esmm", seed, options, folder)
        out = predict(esmm, test)
        baseline = predict(clicked_only_cvr(train, seed, recipe), test)["cvr"]
        for name, cvr in (("esmm", out["cvr"]), ("clicked_only", baseline)):
            results[name].append({
                "cvr_auc_all_impressions": auc(would_convert, cvr),
                "cvr_auc_clicked": auc(test["conversion"].to_numpy()[clicked], cvr[clicked]),
            })  # fmt: skip
        results["esmm"][-1].update(
            ctr_auc=auc(test["click"], out["ctr"]),
            ctcvr_auc=auc(test["conversion"], out["ctcvr"]),
            ctcvr_above_ctr=int(np.sum(out["ctcvr"] > out["ctr"])),
        )
        results["commands"].append(" ".join(command))
        print(f"seed {seed}: {json.dumps({k: results[k][-1] for k in ('esmm', 'clicked_only')})}", flush=True)
    truth = test["conversion_probability"].to_numpy()
    ceiling = auc(would_convert, truth)
    esmm, base = results["esmm"], results["clicked_only"]
    column = lambda rows, key: [row[key] for row in rows]  # noqa: E731
    lines = [
        "| pCVR from | AUC over all test impressions (vs. `conversion_if_click`) | AUC on clicked test impressions (vs. `conversion`) |",
        "|---|---|---|",
        f"| ESMM (`tfmtl train` with `zoo/synthetic-funnel/esmm.toml`) | {mean_std(column(esmm, 'cvr_auc_all_impressions'))} "
        f"| {mean_std(column(esmm, 'cvr_auc_clicked'))} |",
        f"| single-task CVR trained on clicked impressions only | {mean_std(column(base, 'cvr_auc_all_impressions'))} "
        f"| {mean_std(column(base, 'cvr_auc_clicked'))} |",
        f"| the true `conversion_probability` (ceiling) | {ceiling:.4f} | "
        f"{auc(test['conversion'].to_numpy()[clicked], truth[clicked]):.4f} |",
        "",
        f"ESMM's pCTR AUC {mean_std(column(esmm, 'ctr_auc'))}, pCTCVR AUC {mean_std(column(esmm, 'ctcvr_auc'))}; "
        f"test examples with pCTCVR > pCTR: {column(esmm, 'ctcvr_above_ctr')} of {len(test)} per seed.",
    ]
    results["ceiling_cvr_auc_all_impressions"] = ceiling
    return lines, results


def aitm_part(args: argparse.Namespace, options: dict, folder: Path) -> tuple[list[str], dict]:
    settings = [("default funnel" if not options else f"funnel {options}", options)]
    if args.dense:
        settings.append((f"dense funnel {DENSE}", {**options, **DENSE}))
    recipe = load_recipe(shipped_recipe("aitm", "synthetic-funnel"))
    weight = recipe["model_args"]["calibrator_weight"]
    lines = [
        "| data | calibrator | share of test examples with p(conversion) > p(click) | pCTR AUC | pCTCVR AUC | pCVR AUC, all impressions |",
        "|---|---|---|---|---|---|",
    ]
    results: dict = {"commands": []}
    for label, setting in settings:
        _, test = funnel(setting)
        for name, flags in ((f"on ({weight})", []), ("off (0)", ["--model-arg", "calibrator_weight=0"])):
            rows = []
            for seed in args.seeds:
                model, command = train_with_cli("aitm", seed, setting, folder, *flags)
                out = predict(model, test)
                rows.append({
                    "above_click": float(np.mean(out["ctcvr"] > out["ctr"])),
                    "ctr_auc": auc(test["click"], out["ctr"]),
                    "ctcvr_auc": auc(test["conversion"], out["ctcvr"]),
                    "cvr_auc_all_impressions": auc(test["conversion_if_click"], out["cvr"]),
                })  # fmt: skip
                results["commands"].append(" ".join(command))
                print(f"{label}, calibrator {name}, seed {seed}: {json.dumps(rows[-1])}", flush=True)
            results[f"{label}, calibrator {name}"] = rows
            share = [100 * row["above_click"] for row in rows]
            lines.append(
                f"| {label} | {name} | {mean_std(share, 3)} % (max {max(share):.3f} %) | "
                + " | ".join(mean_std([row[k] for row in rows]) for k in ("ctr_auc", "ctcvr_auc", "cvr_auc_all_impressions"))
                + " |"
            )
    return lines, results


def escm2_variants(weights: list[float] | None) -> dict[str, tuple[str, list[str]]]:
    """ESMM, then ESCM² IPS and DR at each counterfactual weight (the recipe's when `weights` is None)."""
    variants = {"ESMM": ("esmm", [])}
    for weight in weights or [None]:
        flags = [] if weight is None else ["--model-arg", f"counterfactual_weight={weight}"]
        suffix = "" if weight is None else f", weight {weight}"
        variants[f"ESCM² IPS{suffix}"] = ("escm2", flags)
        variants[f"ESCM² DR{suffix}"] = ("escm2", [*flags, "--model-arg", "counterfactual=dr"])
    return variants


def escm2_part(args: argparse.Namespace, options: dict, folder: Path) -> tuple[list[str], dict]:
    _, test = funnel(options)
    variants = escm2_variants(args.counterfactual_weights)
    results: dict = {name: [] for name in variants} | {"commands": []}
    for seed in args.seeds:
        for name, (model_name, flags) in variants.items():
            model, command = train_with_cli(model_name, seed, options, folder, *flags)
            results[name].append(cvr_scores(test, predict(model, test)["cvr"]))
            results["commands"].append(" ".join(command))
            print(f"{name}, seed {seed}: {json.dumps(results[name][-1])}", flush=True)
    truth = cvr_scores(test, test["conversion_probability"].to_numpy())
    keys = ("cvr_auc_all_impressions", "cvr_auc_clicked", "calibration", "logloss_vs_truth")
    lines = [
        "| pCVR from | AUC, all test impressions (vs. `conversion_if_click`) | AUC, clicked (vs. `conversion`) "
        "| mean pCVR / mean true CVR, all impressions | log loss vs. the true CVR, all impressions |",
        "|---|---|---|---|---|",
    ]
    for name, command in zip(variants, results["commands"]):
        scores = " | ".join(mean_std([row[k] for row in results[name]]) for k in keys)
        lines.append(f"| {name} (`{command}`) | {scores} |")
    ceiling = " | ".join(f"{truth[k]:.4f}" for k in keys)
    lines.append(f"| the true `conversion_probability` (ceiling) | {ceiling} |")
    return lines, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["esmm", "aitm", "escm2"])
    parser.add_argument("--out", required=True, help="Markdown file to write; the raw figures go beside it (.json)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--dense", action="store_true",
                        help="aitm: also a funnel where most clicks convert (rates 0.1, 0.6)")
    parser.add_argument("--counterfactual-weights", type=float, nargs="+",
                        help="escm2: train ESCM² at each of these weights (default: the recipe's)")  # fmt: skip
    parser.add_argument("--funnel", action="append", default=[], metavar="KEY=VALUE",
                        help="a synthetic_funnel argument (JSON value), e.g. shared=0.5")  # fmt: skip
    args = parser.parse_args()
    options = {key: json.loads(value) for key, _, value in (text.partition("=") for text in args.funnel)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        part = {"esmm": esmm_part, "aitm": aitm_part, "escm2": escm2_part}[args.part]
        lines, results = part(args, options, Path(folder))
    out = Path(args.out)
    command = "python benchmarks/esmm_funnel.py " + " ".join(sys.argv[1:])
    title = {
        "esmm": "ESMM's entire-space pCVR",
        "aitm": "AITM's behavioural expectation calibrator",
        "escm2": "ESCM²'s counterfactual pCVR against ESMM's",
    }[args.part]
    report = "\n".join(
        [
            f"# {title} on synthetic_funnel ({len(args.seeds)} seeds: {args.seeds}; mean ± std)",
            "",
            f"Data: `tfmtl.datasets.synthetic_funnel({', '.join(f'{k}={v!r}' for k, v in options.items())})` "
            "(200,000 training and 100,000 test impressions; see its docstring).",
            "",
            *lines,
            "",
            f"Command: `{command}` ({time.perf_counter() - started:.0f} s on {platform.machine()}, "
            f"{os.cpu_count()} CPU cores shared with other jobs). Each model was trained by `{results['commands'][0]}` "
            "(seeds and flags as listed in the .json).",
            "",
        ]
    )
    print(report)
    tfmtl.data.write_atomically(out, lambda path: Path(path).write_text(report))
    tfmtl.data.write_json(out.with_suffix(".json"), {"command": command, **results})


if __name__ == "__main__":
    main()
