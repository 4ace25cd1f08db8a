"""The `tfmtl` command: train, evaluate, export and predict with multi-task models on tabular files."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from tfmtl.errors import InputError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like the rest of tfmtl's."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


# Trailing `key=value` parts of --task that chain tasks, and the Task fields they set.
_CHAIN_OPTIONS = {"parent": "parent", "conditional": "conditional_name"}


def _task_flag(text: str) -> dict[str, Any]:
    from tfmtl.tasks.task import KINDS

    parts = text.split(":")
    options = {}
    while len(parts) > 2 and "=" in parts[-1] and parts[-1].partition("=")[0] in _CHAIN_OPTIONS:
        key, _, value = parts.pop().partition("=")
        options[_CHAIN_OPTIONS[key]] = value
    if len(parts) < 2 or not parts[0]:
        raise argparse.ArgumentTypeError(f"expected NAME:KIND[:COLUMN][:parent=TASK[:conditional=NAME]], got {text!r}")
    if parts[1] not in KINDS:
        raise argparse.ArgumentTypeError(f"task {parts[0]!r}: unknown kind {parts[1]!r}, expected one of {', '.join(KINDS)}")
    task = {"name": parts[0], "kind": parts[1]}
    column = ":".join(parts[2:])
    if column:
        task["label"] = column
    return {**task, **options}


def _model_arg_flag(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as error:
        if value.lstrip()[:1] in ('[', '{', '"'):  # meant as JSON: a plain string would hide the typo
            raise argparse.ArgumentTypeError(f"{key}: {value!r} is not valid JSON ({error.msg})") from None
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tfmtl", description="Multi-task learning for recommender systems on Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model and report per-task test metrics")
    train.add_argument("--recipe", help="a zoo recipe (TOML or JSON); flags override it")
    train.add_argument("--model", help="model name: shared-bottom, mmoe, omoe, ple, cross-stitch, mha-fusion, "
                       "stem, pepnet, esmm, aitm, escm2 (default: mmoe)")
    data = train.add_mutually_exclusive_group()
    data.add_argument("--dataset", help="a bundled data set: census-income, synthetic-funnel")
    data.add_argument("--train-data", help="training table: CSV (optionally .gz) or Parquet")
    train.add_argument("--test-data", help="test table (default: 20%% of --train-data held out)")
    train.add_argument("--task", action="append", type=_task_flag, metavar="NAME:KIND[:COLUMN][:parent=TASK]",
                       help="a task; KIND is binary, regression or multiclass; repeat for each task. "
                       "parent=TASK chains a binary task after TASK (its COLUMN is then the entire-space "
                       "label, e.g. conversion on every impression) and conditional=NAME names its output "
                       "given the parent (default NAME_conditional): "
                       "ctcvr:binary:conversion:parent=ctr:conditional=cvr")
    train.add_argument("--drop", action="append", metavar="COL", help="a column that is not a feature")
    train.add_argument("--categorical", action="append", metavar="COL", help="treat COL as categorical")
    train.add_argument("--numeric", action="append", metavar="COL", help="treat COL as numeric")
    train.add_argument("--embedding-dim", type=int, help="embedding size of every categorical feature")
    train.add_argument("--model-arg", action="append", type=_model_arg_flag, metavar="KEY=VALUE",
                       help="a model argument, e.g. num_experts=4 or expert_units=[128,64]")
    train.add_argument("--weighting", help="task weighting strategy (tfmtl.weighting.STRATEGIES): static, "
                       "uncertainty, rlw, dwa, gradnorm, famo, pcgrad, cagrad, mgda, aligned-mtl (default: static)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--out", help="output folder (default: runs/MODEL-DATA)")
    train.add_argument("--metrics-json", help="where to write metrics (default: OUT/metrics.json)")
    train.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity: 0, 1 or 2")
    from tfmtl.cli.scale_out import add_flags as add_scale_out_flags

    add_scale_out_flags(train)

    evaluate = commands.add_parser("evaluate", help="evaluate a saved model on a test table")
    evaluate.add_argument("--model-path", required=True, help="a training output folder or a .keras file")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--test-data", help="test table: CSV (optionally .gz) or Parquet")
    source.add_argument("--dataset", help="a bundled data set whose test split to use")
    evaluate.add_argument("--batch-size", type=int, default=8192)
    evaluate.add_argument("--metrics-json", help="where to write metrics (default: next to the model)")

    export = commands.add_parser("export", help="write a saved model as a TF Serving model directory")
    export.add_argument("--model-path", required=True, help="a training output folder or a .keras file")
    export.add_argument("--out", required=True, help="the TF Serving model directory (model_base_path)")
    export.add_argument("--version", type=int, help="version number (default: one more than the highest there)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing version")
    export.add_argument("--warmup-data", help="table whose first rows make the warm-up requests "
                        "(default: the training data named in the folder's recipe.json)")

    predict = commands.add_parser("predict", help="predict every row of a table, streamed in chunks")
    predict.add_argument("--model", "--model-path", dest="model_path", required=True,
                         help="a training output folder or a .keras file")
    predict.add_argument("--data", required=True, help="table of raw features: CSV (optionally .gz) or Parquet")
    predict.add_argument("--out", required=True, help="output table (.csv, .csv.gz or .parquet): one column per output")
    predict.add_argument("--keep", action="append", default=[], metavar="COL",
                         help="copy COL (e.g. an id) from --data to --out; repeat for more")
    predict.add_argument("--batch-size", type=int, default=8192)
    predict.add_argument("--chunk-rows", type=int, default=65_536, help="rows read, predicted and written at a time")
    data_command = commands.add_parser("data", help="convert tables for large-scale and TPU training")
    conversions = data_command.add_subparsers(dest="conversion", required=True, parser_class=_Parser)
    to_tfrecord = conversions.add_parser("to-tfrecord", help="write a table as sharded TFRecord files of tf.Examples")
    to_tfrecord.add_argument("--data", required=True, help="table: CSV (optionally .gz) or Parquet")
    to_tfrecord.add_argument("--out", required=True, help="new folder for the shards and schema.json")
    to_tfrecord.add_argument("--shards", type=int, default=8, help="number of files (at least one per worker)")
    to_tfrecord.add_argument("--compression", default="GZIP", help="GZIP, ZLIB or none")
    from tfmtl.cli.tune import add_tune_parser

    add_tune_parser(commands)
    return parser


def train_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe keys that were given on the command line."""
    flags: dict[str, Any] = {}
    for key in ("model", "dataset", "train_data", "test_data"):
        if getattr(args, key) is not None:
            flags[key] = getattr(args, key)
    if args.task:
        flags["tasks"] = args.task
    if args.drop:
        flags["drop"] = args.drop
    features = {}
    if args.categorical:
        features["categorical"] = args.categorical
    if args.numeric:
        features["numeric"] = args.numeric
    if args.embedding_dim is not None:
        features["embedding_dim"] = args.embedding_dim
    if features:
        flags["features"] = features
    if args.model_arg:
        flags["model_args"] = dict(args.model_arg)
    training = {
        key: getattr(args, key)
        for key in ("epochs", "batch_size", "learning_rate", "seed", "weighting")
        if getattr(args, key) is not None
    }
    if training:
        flags["training"] = training
    return flags


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # usage errors and --help: return the status, as for other errors
        return int(exit_.code or 0)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.command == "train":
            from tfmtl.cli.recipe import load_recipe, resolve
            from tfmtl.cli.train import run_training

            recipe = load_recipe(args.recipe) if args.recipe else None
            config = resolve(recipe, train_flags(args))
            from tfmtl.cli.scale_out import ScaleOut

            run_training(config, out=args.out, metrics_json=args.metrics_json, verbose=args.verbose,
                         scale_out=ScaleOut.from_args(args))  # fmt: skip
        elif args.command == "tune":
            from tfmtl.cli.tune import run_tune_command

            run_tune_command(args)
        elif args.command == "data":
            from tfmtl.cli.data import run_to_tfrecord

            run_to_tfrecord(args.data, args.out, args.shards, args.compression)
        elif args.command == "export":
            from tfmtl.cli.export import run_export

            run_export(args.model_path, args.out, args.version, args.overwrite, args.warmup_data)
        elif args.command == "predict":
            from tfmtl.cli.evaluate import load_trained_model
            from tfmtl.cli.predict import run_prediction

            model = load_trained_model(args.model_path)
            run_prediction(model, args.data, args.out, args.batch_size, args.chunk_rows, args.keep)
        else:
            from tfmtl.cli.evaluate import run_evaluation

            run_evaluation(args.model_path, args.test_data, args.dataset, args.batch_size, args.metrics_json)
    except InputError as error:
        print(f"tfmtl {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
