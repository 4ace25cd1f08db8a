"""tfmtl beside DeepCTR and torch-rechub on Census-Income: accuracy, training and prediction speed, memory, in one run.

One command prepares the data once, trains and predicts with every system on the
same data, configuration, seeds and machine, and writes `results.md` (tables),
`results.json` (every run) and PNG plots to `RESULTS_DIR/<UTC timestamp>/`:

    python benchmarks/compare_peers.py [--seeds 1 2 3] [--models mmoe shared-bottom ple] \
        [--systems tfmtl deepctr torch-rechub] [--no-scaling] [--rows N] [--results-dir benchmarks/results]

Set-up (benchmark-only dependencies, never tfmtl's): matplotlib beside tfmtl
(`pip install ".[benchmarks]"`), and each peer in its own virtual environment
(DeepCTR needs Keras 2, i.e. TensorFlow <= 2.15; torch-rechub the CPU build of PyTorch):

    python -m venv /tmp/deepctr-venv
    /tmp/deepctr-venv/bin/pip install deepctr==0.9.4 "tensorflow-cpu==2.15.*"
    python -m venv /tmp/rechub-venv
    /tmp/rechub-venv/bin/pip install torch==2.13.0 torch-rechub==0.9.0 scikit-learn

A peer whose environment is missing is skipped, with a note in the table
(`--deepctr-python`, `--rechub-python` point elsewhere).

What is measured, per system and seed, each run in its own subprocess
(`benchmarks/peers/*_runner.py`), interleaved (tfmtl, DeepCTR, torch-rechub, then
DeepCTR, torch-rechub, tfmtl, ...: each seed starts one system later) so that machine
noise hits all alike:
- Data: the bundled Census-Income files (199,523 training, 99,762 test rows), tasks
  income > 50K and never married. Features are what tfmtl infers from the training
  data: 33 categoricals (vocabularies from train) and 6 numbers (standardised with
  training mean and variance). The peers get category ids (0 for a value not seen in
  training) and the standardised numbers, prepared here once; tfmtl gets the raw
  DataFrame, since its preprocessing is part of its pipeline (`tfmtl.data.dataset`,
  timed apart as tfmtl's `prepare` seconds and left out of its fit time, as the
  peers' preprocessing is).
- Configuration: the shipped recipes (`zoo/census-income/<model>.toml`); for MMoE
  embeddings of 8, 8 experts x 64, towers of 32, Adam 1e-3, batch 1024, 2 epochs.
- Test AUC per task (exact rank AUC, computed here from each system's saved test
  predictions), mean ± std over seeds; training examples/s (whole fit over data in
  memory, graph tracing included); prediction examples/s (the second of two
  predict calls over the test set at batch 8192; the first, with graph tracing,
  is reported apart); peak resident memory of the system's
  process (Linux's `VmHWM`, framework import and data included).
- Ratios tfmtl / each peer, from this run's means, against the targets of issue 8.
- Scaling: training throughput (1 epoch, seed 1) of the reference MMoE as the batch
  size, the number of experts and the number of tasks grow (tasks beyond the two
  real ones are synthetic: a real label with 10 % of its values flipped).
- Compute roofline: FLOPs per training example of the reference MMoE counted from its
  layers (`training_flops_per_example`), against this machine's float32 matmul
  FLOP/s measured in this run (best of repeated 2048^3 `tf.linalg.matmul`, before and
  after the systems run).

A script, not a test: timings on shared machines are noisy, so compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmtl  # noqa: E402
from tfmtl.cli.recipe import resolve  # noqa: E402
from tfmtl.cli.train import make_features, make_tasks  # noqa: E402
from tfmtl.data import write_atomically, write_json  # noqa: E402
from tfmtl.features import CategoricalFeature, NumericFeature  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNNERS = HERE / "peers"
sys.path.insert(0, str(RUNNERS))
from common import MODELS, RESULT_PREFIX  # noqa: E402

SYSTEMS = {
    "tfmtl": ("tfmtl_runner.py", None),
    "deepctr": ("deepctr_runner.py", "deepctr"),
    "torch-rechub": ("rechub_runner.py", "torch_rechub"),
}
LABELS = {"tfmtl": "tfmtl", "deepctr": "DeepCTR 0.9.4", "torch-rechub": "torch-rechub 0.9.0"}
REFERENCE_MODEL = "mmoe"
MAX_TASKS = 8
SYNTHETIC_FLIP = 0.1
TARGET_SPEEDUP = 3.0
TARGET_AUC_GAP = 0.001


# ---------------------------------------------------------------- data, written once for every system


def reference_config(model: str) -> dict[str, Any]:
    return resolve(None, {"model": model, "dataset": "census-income"})


def synthetic_labels(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """`count` extra binary tasks: task k is real label k % 2 with `SYNTHETIC_FLIP` of its values flipped."""
    rng = np.random.default_rng(seed)
    extra = [np.where(rng.random(len(labels)) < SYNTHETIC_FLIP, 1 - labels[:, k % 2], labels[:, k % 2])
             for k in range(count)]
    return np.column_stack(extra) if extra else np.empty((len(labels), 0), labels.dtype)


def encode(features, df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Category ids (1 + vocabulary index; 0 for a value not in the vocabulary) and standardised numbers."""
    raw = features.input_arrays(df)
    arrays = {}
    for feature in features:
        if isinstance(feature, CategoricalFeature):
            codes = pd.Index(feature.vocabulary).get_indexer(raw[feature.name].astype(str))
            arrays[feature.name] = (codes + 1).astype(np.int32)
        elif isinstance(feature, NumericFeature):
            values = (raw[feature.name] - feature.mean) / np.sqrt(max(feature.variance, 1e-12))
            arrays[feature.name] = np.nan_to_num(values).astype(np.float32)
        else:
            raise ValueError(f"feature {feature.name!r}: the peers' encoding has no {feature.kind} features")
    return arrays


def prepare_data(train: pd.DataFrame, test: pd.DataFrame, folder: Path) -> dict[str, Any]:
    """Writes `arrays.npz`, `meta.json` and the raw `train.parquet`/`test.parquet`; returns the meta."""
    config = reference_config(REFERENCE_MODEL)
    tasks = make_tasks(config, train)
    features = make_features(config, train, tasks)
    task_names = [t.name for t in tasks] + [f"task{k}" for k in range(len(tasks) + 1, MAX_TASKS + 1)]
    arrays = {}
    for part, df in (("train", train), ("test", test)):
        labels = np.column_stack([t.label_values(df) for t in tasks]).astype(np.int8)
        labels = np.column_stack([labels, synthetic_labels(labels, MAX_TASKS - len(tasks))])
        arrays.update({f"{part}__{k}": v for k, v in encode(features, df).items()})
        arrays[f"{part}__labels"] = labels
        df.to_parquet(folder / f"{part}.parquet")
    np.savez(folder / "arrays.npz", **arrays)
    meta = {
        "tasks": task_names,
        "embedding_dim": config["features"]["embedding_dim"],
        "categorical": {f.name: len(f.vocabulary) + 1 for f in features if isinstance(f, CategoricalFeature)},
        "numeric": [f.name for f in features if isinstance(f, NumericFeature)],
        "training": config["training"],
        "models": {model: reference_config(model)["model_args"] for model in MODELS},
        "tfmtl_features": json.loads(json.dumps(features.get_config())),
        "encoded_width": encoded_width(features),
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def encoded_width(features) -> int:
    """Width of the encoded input the experts read: embeddings, numbers and their "was missing" columns."""
    return sum(f.embedding_dim if isinstance(f, CategoricalFeature) else 1 + int(f.missing_indicator) for f in features)


# ---------------------------------------------------------------- compute roofline


def training_flops_per_example(width: int, num_experts: int, expert_units: list[int], tower_units: list[int],
                               num_tasks: int) -> dict[str, float]:
    """FLOPs of one MMoE training example, counting multiply-adds of the dense layers as 2 FLOPs.

    Forward: experts `2 * E * (d*h1 + h1*h2 + ...)`, gates `2 * T * d * E`, mixing
    `2 * T * E * h_last`, towers `2 * T * (h_last*t1 + ... + t_last*1)`; embedding
    gathers, biases and activations are not counted. Training is counted as 3 x
    forward (the backward pass computes gradients of both inputs and weights).
    """
    expert_dims = [width, *expert_units]
    experts = 2 * num_experts * sum(a * b for a, b in zip(expert_dims, expert_dims[1:]))
    gates = 2 * num_tasks * width * num_experts
    mixing = 2 * num_tasks * num_experts * expert_units[-1]
    tower_dims = [expert_units[-1], *tower_units, 1]
    towers = 2 * num_tasks * sum(a * b for a, b in zip(tower_dims, tower_dims[1:]))
    forward = experts + gates + mixing + towers
    return {"experts": experts, "gates": gates, "mixing": mixing, "towers": towers,
            "forward": forward, "training": 3 * forward}


def matmul_flops_per_second(size: int = 2048, repeats: int = 10) -> dict[str, float]:
    """Best and median float32 FLOP/s of `tf.linalg.matmul` on `size`^3, on this machine now."""
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    tf.linalg.matmul(a, b).numpy()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        seconds.append(time.perf_counter() - started)
    flops = 2 * size**3
    return {"size": size, "repeats": repeats, "best": flops / min(seconds), "median": flops / statistics.median(seconds)}


# ---------------------------------------------------------------- running the systems


def exact_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic, ties counted as one half."""
    labels = np.asarray(labels).astype(bool)
    _, inverse, counts = np.unique(np.asarray(scores), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[inverse]  # average rank of each group of ties
    positives = labels.sum()
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def system_python(system: str, args: argparse.Namespace) -> str:
    return {"tfmtl": sys.executable, "deepctr": args.deepctr_python, "torch-rechub": args.rechub_python}[system]


def unavailable(system: str, args: argparse.Namespace) -> str | None:
    """Why `system` cannot run here, or None."""
    python, (_, package) = system_python(system, args), SYSTEMS[system]
    if not Path(python).is_file():
        return f"not installed: no {python} (see the set-up in compare_peers.py's docstring)"
    if package:
        found = subprocess.run([python, "-c", f"import importlib.util as u, sys; sys.exit(u.find_spec({package!r}) is None)"],
                               capture_output=True)
        if found.returncode != 0:
            return f"not installed: {python} has no {package}"
    return None


def run_system(system: str, args: argparse.Namespace, data: Path, options: list[str], timeout: float) -> dict:
    """Runs one system's runner as a subprocess; its result, or `{"error": ...}`."""
    script = RUNNERS / SYSTEMS[system][0]
    command = [system_python(system, args), str(script), "--data", str(data), *options]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"system": system, "error": f"timed out after {timeout:.0f} s", "options": options}
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        return {"system": system, "error": f"exit {done.returncode}: {' | '.join(tail)}", "options": options}
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result.update(options=options, wall_seconds=time.perf_counter() - started, load_average_before=load)
    return result


def comparison_runs(args, systems, data: Path, meta: dict, scratch: Path, progress: Path) -> list[dict]:
    """Every model x seed x system, the systems in turn within each seed (rotated); AUCs from the saved predictions."""
    test_labels = np.load(data / "arrays.npz")["test__labels"]
    runs = []
    for model in args.models:
        for round_index, seed in enumerate(args.seeds):
            # Each seed starts one system later, so no system always runs first (or last) on the machine.
            shift = round_index % len(systems)
            for system in systems[shift:] + systems[:shift]:
                predictions = scratch / f"{system}-{model}-{seed}.npy"
                options = ["--model", model, "--seed", str(seed), "--predictions", str(predictions),
                           "--predict-batch-size", str(args.predict_batch_size)]
                print(f"{model} seed {seed}: {system} ...", flush=True)
                result = run_system(system, args, data, options, args.timeout)
                if "error" not in result:
                    scores = np.load(predictions)
                    result["auc"] = {task: exact_auc(test_labels[:, i], scores[:, i])
                                     for i, task in enumerate(meta["tasks"][:2])}
                result.update(model=model, seed=seed)
                runs.append(result)
                print(f"  {summary_line(result)}", flush=True)
                write_json(progress, {"runs": runs})
    return runs


def scaling_points(args) -> dict[str, list[tuple[int, int, int]]]:
    """Axis name -> (batch size, experts, tasks) points; the other two stay at the reference values."""
    reference = reference_config(REFERENCE_MODEL)
    batch, experts = reference["training"]["batch_size"], reference["model_args"]["num_experts"]
    return {
        "batch_size": [(b, experts, 2) for b in args.scaling_batch_sizes],
        "experts": [(batch, e, 2) for e in args.scaling_experts],
        "tasks": [(batch, experts, t) for t in args.scaling_tasks],
    }


def scaling_runs(args, systems, data: Path, progress: Path) -> list[dict]:
    """Training throughput of each distinct scaling point, systems interleaved; shared points run once."""
    points = sorted({p for axis in scaling_points(args).values() for p in axis}, key=lambda p: (p[2], p[1], p[0]))
    runs = []
    for batch, experts, tasks in points:
        for system in systems:
            options = ["--model", REFERENCE_MODEL, "--seed", str(args.scaling_seed), "--epochs",
                       str(args.scaling_epochs), "--batch-size", str(batch), "--num-experts", str(experts),
                       "--num-tasks", str(tasks), "--skip-predict"]
            print(f"scaling batch {batch}, {experts} experts, {tasks} tasks: {system} ...", flush=True)
            result = run_system(system, args, data, options, args.timeout)
            result.update(batch_size=batch, num_experts=experts, num_tasks=tasks)
            runs.append(result)
            print(f"  {summary_line(result)}", flush=True)
            write_json(progress, {"scaling": runs})
    return runs


def summary_line(result: dict) -> str:
    if "error" in result:
        return f"failed: {result['error']}"
    parts = [f"train {result['train_examples_per_second']:,.0f}/s"]
    if "predict_examples_per_second" in result:
        parts.append(f"predict {result['predict_examples_per_second']:,.0f}/s")
    parts.append(f"peak {result['peak_rss_mb']:,.0f} MB")
    parts += [f"{task} AUC {auc:.4f}" for task, auc in result.get("auc", {}).items()]
    return ", ".join(parts)


# ---------------------------------------------------------------- summaries


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def summarise(runs: list[dict], model: str, systems: list[str], tasks: list[str]) -> dict[str, dict]:
    summary = {}
    for system in systems:
        ok = [r for r in runs if r["system"] == system and r["model"] == model and "error" not in r]
        if not ok:
            continue
        summary[system] = {
            "versions": ok[0]["versions"],
            "seeds": [r["seed"] for r in ok],  # those that finished: a failed run is left out of the means
            "train_examples_per_second": mean_std([r["train_examples_per_second"] for r in ok]),
            "predict_examples_per_second": mean_std([r["predict_examples_per_second"] for r in ok]),
            "peak_rss_mb": mean_std([r["peak_rss_mb"] for r in ok]),
            "import_rss_mb": mean_std([r["import_rss_mb"] for r in ok]),
            "fit_seconds": mean_std([r["fit_seconds"] for r in ok]),
            "predict_cold_seconds": mean_std([r["predict_cold_seconds"] for r in ok]),
            **{f"{task}_auc": mean_std([r["auc"][task] for r in ok]) for task in tasks},
        }
        if system == "tfmtl":
            summary[system]["prepare_seconds"] = mean_std([r["prepare_seconds"] for r in ok])
    return summary


def ratios(summary: dict, tasks: list[str]) -> dict[str, dict]:
    """tfmtl / each peer from this run's means: speed-ups, memory ratio, AUC differences."""
    if "tfmtl" not in summary:
        return {}
    ours = summary["tfmtl"]
    out = {}
    for peer, theirs in summary.items():
        if peer == "tfmtl":
            continue
        out[peer] = {
            "train_speedup": ours["train_examples_per_second"]["mean"] / theirs["train_examples_per_second"]["mean"],
            "predict_speedup": ours["predict_examples_per_second"]["mean"] / theirs["predict_examples_per_second"]["mean"],
            "peak_memory_ratio": ours["peak_rss_mb"]["mean"] / theirs["peak_rss_mb"]["mean"],
            **{f"{task}_auc_difference": ours[f"{task}_auc"]["mean"] - theirs[f"{task}_auc"]["mean"] for task in tasks},
        }
    return out


def targets(summary: dict, ratio: dict, tasks: list[str]) -> list[dict]:
    """Issue 8's targets for the reference configuration, each with what this run measured."""
    rows = []
    for peer in ratio:
        for kind in ("train", "predict"):
            value = ratio[peer][f"{kind}_speedup"]
            rows.append({"target": f"{kind.replace('train', 'training').replace('predict', 'prediction')} "
                                   f"throughput >= {TARGET_SPEEDUP:g}x {LABELS[peer]}",
                         "measured": f"{value:.2f}x", "met": value >= TARGET_SPEEDUP})
    peers = [p for p in ratio]
    if peers:
        for task in tasks:
            best = max(summary[p][f"{task}_auc"]["mean"] for p in peers)
            gap = summary["tfmtl"][f"{task}_auc"]["mean"] - best
            rows.append({"target": f"{task} AUC >= best peer's - {TARGET_AUC_GAP}",
                         "measured": f"{gap:+.4f} ({summary['tfmtl'][f'{task}_auc']['mean']:.4f} vs {best:.4f})",
                         "met": gap >= -TARGET_AUC_GAP})
    if "deepctr" in ratio:
        value = ratio["deepctr"]["peak_memory_ratio"]
        rows.append({"target": "peak memory <= DeepCTR's", "measured": f"{value:.2f}x", "met": value <= 1.0})
    return rows


# ---------------------------------------------------------------- report


def fmt(stat: dict | None, digits: int = 0, thousands: bool = True) -> str:
    if not stat:
        return "–"
    spec = f",.{digits}f" if thousands else f".{digits}f"
    return f"{stat['mean']:{spec}} ± {stat['std']:{spec}}"


def versions_text(versions: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def markdown(report: dict) -> str:
    tasks = report["tasks"]
    lines = [
        "# tfmtl beside DeepCTR and torch-rechub (Census-Income)",
        "",
        f"Command: `{report['command']}`  ",
        f"Run: {report['started']} to {report['finished']} UTC on {report['machine']}; "
        f"load average {report['load_average'][0]:.1f} at the start, {report['load_average'][1]:.1f} at the end.  ",
        f"Code: tfmtl at commit {report['commit']}. Seeds {', '.join(map(str, report['seeds']))}; "
        f"{report['train_rows']:,} training and {report['test_rows']:,} test rows.",
        "",
    ]
    for system, why in report["skipped"].items():
        lines.append(f"**{LABELS[system]} skipped**: {why}.  ")
    failed = [r for r in report["runs"] + report["scaling"] if "error" in r]
    for r in failed:
        lines.append(f"**{LABELS[r['system']]} failed** ({' '.join(r['options'])}): {r['error']}  ")
    for model, summary in report["summaries"].items():
        lines += ["", f"## {model}" + (" (reference configuration)" if model == REFERENCE_MODEL else ""), "",
                  f"Settings: {json.dumps(report['model_settings'][model])}; training "
                  f"{json.dumps({k: v for k, v in report['training'].items() if k != 'seed'})}.",
                  "", "| system | " + " | ".join(f"{t} AUC" for t in tasks)
                  + " | training examples/s | prediction examples/s | peak RSS MB | RSS after imports MB | fit s | first predict s |",
                  "|---|" + "---|" * (len(tasks) + 6)]
        for system, s in summary.items():
            finished = ", ".join(map(str, s["seeds"]))
            partial = "" if len(s["seeds"]) == len(report["seeds"]) else f"; seeds {finished} only"
            lines.append(f"| {LABELS[system]} ({versions_text(s['versions'])}{partial}) | "
                         + " | ".join(fmt(s[f"{t}_auc"], 4, False) for t in tasks)
                         + f" | {fmt(s['train_examples_per_second'])} | {fmt(s['predict_examples_per_second'])}"
                         f" | {fmt(s['peak_rss_mb'])} | {fmt(s['import_rss_mb'])} | {fmt(s['fit_seconds'], 1)} | {fmt(s['predict_cold_seconds'], 1)} |")
        if "tfmtl" in summary:
            lines.append("")
            lines.append(f"tfmtl's own preprocessing of the raw training DataFrame (`tfmtl.data.dataset`, not in its "
                         f"fit time, as the peers' encoding is not in theirs): {fmt(summary['tfmtl']['prepare_seconds'], 2)} s.")
        ratio = report["ratios"].get(model, {})
        if ratio:
            lines += ["", "tfmtl / peer, from this run's means:", "",
                      "| peer | training speed-up | prediction speed-up | peak memory ratio | "
                      + " | ".join(f"{t} AUC difference" for t in tasks) + " |",
                      "|---|---|---|---|" + "---|" * len(tasks)]
            for peer, r in ratio.items():
                lines.append(f"| {LABELS[peer]} | {r['train_speedup']:.2f}x | {r['predict_speedup']:.2f}x | "
                             f"{r['peak_memory_ratio']:.2f}x | "
                             + " | ".join(f"{r[f'{t}_auc_difference']:+.4f}" for t in tasks) + " |")
        if model == REFERENCE_MODEL and report["targets"]:
            lines += ["", "Targets (issue 8):", "", "| target | measured | met |", "|---|---|---|"]
            lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |" for t in report["targets"]]
    lines += roofline_markdown(report)
    lines += scaling_markdown(report)
    batch = report.get("predict_batch_size", 8192)  # reports written before it was recorded used 8192
    lines += ["", "## Notes", ""] + [f"- {note.format(predict_batch_size=batch)}" for note in NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "Each system runs in its own process; each number comes from the same run, so compare within this table only.",
    "Inputs: tfmtl takes the raw DataFrame and preprocesses it itself (vocabulary lookups and standardisation "
    "inside `tfmtl.data.dataset`, reported separately); DeepCTR and torch-rechub take the same information "
    "encoded beforehand (category ids with 0 for unseen values, numbers standardised with training statistics).",
    "Fit time is the whole `fit` (tfmtl, DeepCTR: graph tracing included) or torch-rechub's `MTLTrainer` epoch "
    "loop without its per-epoch validation. Prediction examples/s: the second of two calls of each library's own "
    "predict over the test set at batch {predict_batch_size}; the first call, graph tracing included, is "
    "'first predict s'.",
    "tfmtl trains with its recipe's `steps_per_execution`; DeepCTR with embedding L2 set to 0 (its default is "
    "1e-5) so all minimise the same loss; torch-rechub's MLPs carry BatchNorm after every linear layer and its "
    "loss is the mean of the task losses (its design).",
    "torch-rechub runs with OMP_WAIT_POLICY=PASSIVE unless the environment sets it: spinning OpenMP threads "
    "made it over 10x slower on a machine shared with other jobs; its batches are its own datasets indexed a "
    "batch at a time (its DataGenerator collates one example at a time).",
    "Peak RSS is each runner process's peak resident memory (framework, data and model): Linux's VmHWM; "
    "'RSS after imports' is its resident memory with the framework imported and no data loaded yet.",
]


def roofline_markdown(report: dict) -> list[str]:
    roof = report.get("roofline")
    if not roof:
        return []
    flops = roof["flops"]
    lines = ["", "## Compute roofline (reference MMoE)", "",
             f"FLOPs per training example = 3 x forward; forward = experts 2·E·d·h ({flops['experts']:,.0f}) + gates "
             f"2·T·d·E ({flops['gates']:,.0f}) + mixing 2·T·E·h ({flops['mixing']:,.0f}) + towers "
             f"2·T·(h·t + t) ({flops['towers']:,.0f}) = {flops['forward']:,.0f}, with d = {roof['width']} "
             f"(encoded input width), E = {roof['num_experts']}, h = {roof['expert_units']}, t = {roof['tower_units']}, "
             f"T = {roof['num_tasks']}: **{flops['training'] / 1e6:.3f} MFLOP per training example**.",
             "",
             f"Matmul ({roof['matmul'][0]['size']}^3 float32, `tf.linalg.matmul`): best "
             f"{roof['matmul'][0]['best'] / 1e9:.1f} GFLOP/s before the systems ran, "
             f"{roof['matmul'][1]['best'] / 1e9:.1f} after (medians {roof['matmul'][0]['median'] / 1e9:.1f} and "
             f"{roof['matmul'][1]['median'] / 1e9:.1f}). Limit = best / FLOPs per example = "
             f"**{roof['limit_examples_per_second']:,.0f} training examples/s**.", "",
             "| system | training examples/s | fraction of the limit |", "|---|---|---|"]
    for system, value in roof["systems"].items():
        lines.append(f"| {LABELS[system]} | {value:,.0f} | {value / roof['limit_examples_per_second']:.1%} |")
    return lines


SCALING_AXES = {"batch_size": ("batch size", "batch_size"), "experts": ("experts", "num_experts"),
                "tasks": ("tasks", "num_tasks")}


def scaling_table(report: dict, axis: str) -> tuple[list[int], dict[str, list[float | None]]]:
    points = report["scaling_points"][axis]
    key = SCALING_AXES[axis][1]
    series = {}
    for system in report["systems"]:
        values = []
        for point in points:
            batch, experts, tasks = point
            match = [r for r in report["scaling"] if r["system"] == system and "error" not in r
                     and (r["batch_size"], r["num_experts"], r["num_tasks"]) == tuple(point)]
            values.append(match[0]["train_examples_per_second"] if match else None)
        series[system] = values
    return [dict(zip(("batch_size", "num_experts", "num_tasks"), p))[key] for p in points], series


def scaling_markdown(report: dict) -> list[str]:
    if not report["scaling"]:
        return []
    lines = ["", f"## Scaling (training examples/s, reference MMoE otherwise, {report['scaling_epochs']} epoch, "
                 f"seed {report['scaling_seed']})"]
    for axis, (title, _) in SCALING_AXES.items():
        xs, series = scaling_table(report, axis)
        lines += ["", f"By {title}:", "", f"| {title} | " + " | ".join(LABELS[s] for s in series) + " |",
                  "|---|" + "---|" * len(series)]
        for i, x in enumerate(xs):
            lines.append(f"| {x} | " + " | ".join("–" if v[i] is None else f"{v[i]:,.0f}" for v in series.values()) + " |")
    return lines


def plots(report: dict, folder: Path) -> list[str]:
    """Writes the PNG figures; returns their file names (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install '.[benchmarks]')", file=sys.stderr)
        return []

    def save(fig, name: str) -> str:
        fig.tight_layout()
        write_atomically(folder / name, lambda path: fig.savefig(path, dpi=110, format="png"))
        plt.close(fig)
        return name

    written = []
    summary = report["summaries"].get(REFERENCE_MODEL, {})
    if summary:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, key, title in zip(axes, ("train_examples_per_second", "predict_examples_per_second"),
                                  ("training", "prediction")):
            names = list(summary)
            ax.bar([LABELS[n] for n in names], [summary[n][key]["mean"] for n in names],
                   yerr=[summary[n][key]["std"] for n in names], color=[COLORS[n] for n in names], capsize=4)
            ax.set_title(f"{title} examples/s (reference MMoE)")
            ax.grid(axis="y", alpha=0.3)
        written.append(save(fig, "throughput.png"))
    for axis, (title, _) in SCALING_AXES.items():
        if not report["scaling"]:
            break
        xs, series = scaling_table(report, axis)
        fig, ax = plt.subplots(figsize=(6, 4))
        for system, values in series.items():
            points = [(x, v) for x, v in zip(xs, values) if v is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=LABELS[system], color=COLORS[system])
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(title)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("training examples/s")
        ax.set_title(f"training throughput by {title}")
        ax.grid(alpha=0.3)
        ax.legend()
        written.append(save(fig, f"scaling_{axis}.png"))
    roof = report.get("roofline")
    if roof and roof["systems"]:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = list(roof["systems"])
        limit = roof["limit_examples_per_second"]
        bars = ax.bar([LABELS[n] for n in names], [roof["systems"][n] for n in names],
                      color=[COLORS[n] for n in names])
        for bar, name in zip(bars, names):
            ax.annotate(f"{roof['systems'][name] / limit:.1%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom")
        ax.axhline(limit, color="black", linestyle="--",
                   label=f"matmul limit {limit:,.0f}/s ({roof['flops']['training'] / 1e6:.2f} MFLOP/example)")
        ax.set_ylabel("training examples/s")
        ax.set_title("reference MMoE against the compute limit")
        ax.legend(loc="upper right")
        written.append(save(fig, "roofline.png"))
    return written


COLORS = {"tfmtl": "tab:blue", "deepctr": "tab:orange", "torch-rechub": "tab:green"}


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
        # The library, the runners and this script: any of them changes what is measured.
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "tfmtl", "benchmarks"], cwd=HERE.parent,
                               capture_output=True, text=True).stdout.strip()
        return head + (" with uncommitted changes under tfmtl/ or benchmarks/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=[REFERENCE_MODEL])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rows", type=int, help="only the first ROWS training and test rows (smoke runs)")
    parser.add_argument("--predict-batch-size", type=int, default=8192)
    parser.add_argument("--deepctr-python", default="/tmp/deepctr-venv/bin/python")
    parser.add_argument("--rechub-python", default="/tmp/rechub-venv/bin/python")
    parser.add_argument("--results-dir", default=str(HERE / "results"))
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling study")
    parser.add_argument("--scaling-batch-sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--scaling-experts", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--scaling-tasks", type=int, nargs="+", default=[2, 4, 6, 8])
    parser.add_argument("--scaling-epochs", type=int, default=1)
    parser.add_argument("--scaling-seed", type=int, default=1)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed to one system's run")
    args = parser.parse_args(argv)
    if max(args.scaling_tasks) > MAX_TASKS or min(args.scaling_tasks) < 1:
        parser.error(f"--scaling-tasks: between 1 and {MAX_TASKS}")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    started = datetime.now(timezone.utc)
    load_start = os.getloadavg()[0]
    commit = git_commit()  # the code the runs will use, not whatever is there when they end
    train, test = tfmtl.datasets.census_income()
    if args.rows:
        train, test = train.head(args.rows).reset_index(drop=True), test.head(args.rows).reset_index(drop=True)
    skipped = {s: why for s in args.systems if (why := unavailable(s, args))}
    systems = [s for s in args.systems if s not in skipped]
    for system, why in skipped.items():
        print(f"{system} skipped: {why}", file=sys.stderr)
    folder = Path(args.results_dir) / started.strftime("%Y%m%d-%H%M%S")
    progress = folder / "runs-so-far.json"  # what an interrupted run had measured; removed at the end
    matmul_before = matmul_flops_per_second(args.matmul_size)
    with tempfile.TemporaryDirectory(prefix="compare-peers-") as scratch:
        data = Path(scratch) / "data"
        data.mkdir()
        meta = prepare_data(train, test, data)
        runs = comparison_runs(args, systems, data, meta, Path(scratch), progress)
        scaling = [] if args.no_scaling else scaling_runs(args, systems, data, progress.with_name("scaling-so-far.json"))
    matmul_after = matmul_flops_per_second(args.matmul_size)
    tasks = meta["tasks"][:2]
    summaries = {model: summarise(runs, model, systems, tasks) for model in args.models}
    ratio = {model: ratios(summary, tasks) for model, summary in summaries.items()}
    reference = meta["models"][REFERENCE_MODEL]
    flops = training_flops_per_example(meta["encoded_width"], reference["num_experts"], reference["expert_units"],
                                       reference["tower_units"], len(tasks))
    best = max(matmul_before["best"], matmul_after["best"])
    reference_summary = summaries.get(REFERENCE_MODEL, {})
    report = {
        "command": "python benchmarks/compare_peers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": started.strftime("%Y-%m-%d %H:%M:%S"),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": [load_start, os.getloadavg()[0]],
        "commit": commit,
        "seeds": args.seeds,
        "predict_batch_size": args.predict_batch_size,
        "train_rows": len(train),
        "test_rows": len(test),
        "tasks": tasks,
        "systems": systems,
        "skipped": skipped,
        "training": meta["training"],
        "model_settings": {model: meta["models"][model] for model in args.models},
        "runs": runs,
        "summaries": summaries,
        "ratios": ratio,
        "targets": targets(reference_summary, ratio.get(REFERENCE_MODEL, {}), tasks) if "tfmtl" in reference_summary else [],
        "roofline": {
            "width": meta["encoded_width"], "num_experts": reference["num_experts"],
            "expert_units": reference["expert_units"], "tower_units": reference["tower_units"],
            "num_tasks": len(tasks), "flops": flops, "matmul": [matmul_before, matmul_after],
            "limit_examples_per_second": best / flops["training"],
            "systems": {s: v["train_examples_per_second"]["mean"] for s, v in reference_summary.items()},
        },
        "scaling_points": scaling_points(args),
        "scaling_epochs": args.scaling_epochs,
        "scaling_seed": args.scaling_seed,
        "scaling": scaling,
    }
    report["plots"] = plots(report, folder)
    write_atomically(folder / "results.md", lambda path: Path(path).write_text(markdown(report)))
    write_json(folder / "results.json", report)
    for partial in (progress, progress.with_name("scaling-so-far.json")):
        partial.unlink(missing_ok=True)
    print(markdown(report))
    print(f"results written to {folder}")
    return folder


if __name__ == "__main__":
    main()
