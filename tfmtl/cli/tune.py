"""`tfmtl tune`: search models, training settings and task weights; report the leaderboard, Pareto front and best recipe."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from tfmtl.cli.recipe import load_recipe, resolve, shipped_recipe
from tfmtl.cli.train import DATASETS, load_data, make_tasks
from tfmtl.data import write_atomically, write_json
from tfmtl.errors import InputError
from tfmtl.zoo import MODELS

PROJECT = "search"
SETTINGS_FILE = "search.json"
TUNER_CHOICES = ("random", "hyperband", "bayesian", "pso")


def add_tune_parser(commands: Any) -> None:
    """Adds `tfmtl tune` to the command's subparsers."""
    from tfmtl.cli.main import _task_flag

    tune = commands.add_parser("tune", help="search models, training settings and task weights with keras-tuner")
    tune.add_argument("--recipe", help="a recipe whose data, tasks and training settings the search keeps")
    data = tune.add_mutually_exclusive_group()
    data.add_argument("--dataset", help=f"a bundled data set: {', '.join(DATASETS)}")
    data.add_argument("--train-data", help="training table: CSV (optionally .gz) or Parquet")
    tune.add_argument("--test-data", help="test table of the written recipe (the search never reads it)")
    tune.add_argument("--task", action="append", type=_task_flag, metavar="NAME:KIND[:COLUMN]",
                      help="a task; KIND is binary, regression or multiclass; repeat for each task")
    tune.add_argument("--drop", action="append", metavar="COL", help="a column that is not a feature")
    tune.add_argument("--categorical", action="append", metavar="COL", help="treat COL as categorical")
    tune.add_argument("--numeric", action="append", metavar="COL", help="treat COL as numeric")
    tune.add_argument("--space", help="search space file (TOML, YAML or JSON; default: the shipped space of the "
                                      "data set, else Census-Income's)")
    tune.add_argument("--tuner", default="pso", help=f"{', '.join(TUNER_CHOICES)} (default: pso)")
    tune.add_argument("--max-trials", type=int, default=20, help="trials in all (hyperband: see --epochs)")
    tune.add_argument("--objective", help="METRIC (mean over the tasks reporting it) or TASK:METRIC[=WEIGHT],... "
                      "(default: auc, the mean validation AUC of the binary tasks)")
    tune.add_argument("--out", required=True, help="search folder; rerunning on it continues the search")
    tune.add_argument("--epochs", type=int, help="epochs per trial (hyperband: of the longest trial)")
    tune.add_argument("--batch-size", type=int)
    tune.add_argument("--seed", type=int)
    tune.add_argument("--data-fraction", type=float, default=1.0, help="share of the search rows trials use")
    tune.add_argument("--validation-fraction", type=float, default=0.2,
                      help="share of the training rows held out to score trials")
    tune.add_argument("--verbose", type=int, default=2, help="0, 1 or 2")  # fmt: skip


def tune_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe keys given on the command line (those `tfmtl train` also takes)."""
    from tfmtl.cli.main import train_flags

    absent = {"model": None, "embedding_dim": None, "model_arg": None, "weighting": None, "learning_rate": None}
    return train_flags(argparse.Namespace(**{**absent, **vars(args)}))


def run_tune_command(args: argparse.Namespace) -> pd.DataFrame | None:
    recipe = load_recipe(args.recipe) if args.recipe else None
    config = resolve(recipe, tune_flags(args))
    return run_tune(
        config,
        out=args.out,
        space=args.space,
        tuner=args.tuner,
        max_trials=args.max_trials,
        objective=args.objective,
        data_fraction=args.data_fraction,
        validation_fraction=args.validation_fraction,
        verbose=args.verbose,
    )


def is_worker() -> bool:
    """A worker of keras-tuner's distributed search (`KERASTUNER_TUNER_ID` without "chief")."""
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")


def split(train: pd.DataFrame, validation_fraction: float, data_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holds out the validation rows, then keeps `data_fraction` of each side (seeded)."""
    for name, fraction in (("--validation-fraction", validation_fraction), ("--data-fraction", data_fraction)):
        if not 0 < fraction <= 1 or (name == "--validation-fraction" and fraction == 1):
            raise InputError(f"{name}: expected a number in (0, 1{']' if name == '--data-fraction' else ')'}, got {fraction}")
    valid = train.sample(frac=validation_fraction, random_state=seed)
    rest = train.drop(index=valid.index)
    if data_fraction < 1:
        rest = rest.sample(frac=data_fraction, random_state=seed)
        valid = valid.sample(frac=data_fraction, random_state=seed)
    if rest.empty or valid.empty:
        raise InputError("--data-fraction: too few rows left to search; raise it or give more data")
    return rest, valid


def reference_values(space: Any, dataset: str | None, first: str) -> list[dict[str, Any]]:
    """The space's values of the zoo's recipes for `dataset`, model `first` first (where the swarm starts)."""
    values = []
    for model in sorted(MODELS, key=lambda name: name != first):
        path = shipped_recipe(model, dataset) if dataset else None
        if path is not None:
            try:
                values.append(space.values_for(load_recipe(path)))
            except InputError:
                continue
    return values


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuses to continue a search in `out` that had other settings (only the number of trials may change)."""
    path = out / SETTINGS_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        # Keys the saved settings lack came later: a search saved before them continues.
        changed = sorted(k for k in saved if k != "max_trials" and saved.get(k) != settings.get(k))
        if changed:
            raise InputError(f"--out: {out} holds a search with other {', '.join(changed)}; use a new --out to start another")
    write_json(path, settings)


def run_tune(
    config: dict[str, Any],
    out: str,
    space: str | None = None,
    tuner: str = "pso",
    max_trials: int = 20,
    objective: str | None = None,
    data_fraction: float = 1.0,
    validation_fraction: float = 0.2,
    verbose: int = 2,
) -> pd.DataFrame | None:
    """Runs (or continues) the search; returns the leaderboard, or None on a distributed worker."""
    from tfmtl.tuning import MultiTaskHyperModel, SearchSpace, TaskObjective, make_tuner, shipped_space

    if tuner not in TUNER_CHOICES:
        raise InputError(f"--tuner: unknown tuner {tuner!r}, expected one of {', '.join(TUNER_CHOICES)}")
    training = config["training"]
    # The search never reads a test set: all training rows go to its trials and validation.
    train, _, data_name = load_data(config, hold_out_test=False)
    search_train, valid = split(train, validation_fraction, data_fraction, training["seed"])
    search_space = SearchSpace.load(space or shipped_space(config.get("dataset")))
    missing = search_space.missing_features([c for c in train.columns if c not in set(config.get("drop") or [])])
    if missing and space:
        (model, key), names = next(iter(missing.items()))
        raise InputError(f"--space: [models.{model}] {key} names {names}, which are not columns of the data")
    if missing:
        # The shipped space can name a bundled data set's columns (PEPNet's priors).
        for (model, key), names in missing.items():
            print(f"{model}: searched with its default {key} (the shipped space names {names}, not in this data)")
        search_space = search_space.without(list(missing))
    tasks = make_tasks(config, train)
    unlabelled = [task.name for task in tasks if not valid[task.label].notna().any()]
    if unlabelled:
        raise InputError(f"--validation-fraction: the validation rows have no labels of task(s) {unlabelled}; "
                         "raise it or --data-fraction")  # fmt: skip
    task_objective = TaskObjective.parse(objective, tasks)
    hypermodel = MultiTaskHyperModel(search_space, search_train, config, task_objective)
    out_dir = Path(out)
    check_settings(out_dir, {
        "tuner": tuner, "objective": task_objective.describe(), "space": search_space.config,
        "data": data_name, "tasks": [dict(t) for t in hypermodel.recipe_tasks], "epochs": training["epochs"],
        "batch_size": training["batch_size"], "seed": training["seed"], "data_fraction": data_fraction,
        "validation_fraction": validation_fraction, "max_trials": max_trials, "drop": sorted(config.get("drop") or []),
        "features": {k: v for k, v in (config.get("features") or {}).items() if k != "embedding_dim"},
        "training": {k: training.get(k) for k in ("steps_per_execution", "jit_compile")},
    })  # fmt: skip
    search = make_tuner(
        tuner, hypermodel, task_objective.keras_objective, max_trials=max_trials, max_epochs=training["epochs"],
        directory=str(out_dir), project_name=PROJECT, seed=training["seed"],
        initial_values=reference_values(search_space, config.get("dataset"), config["model"]),
    )  # fmt: skip
    print(f"tune {tuner} on {data_name}: {len(search_train)} search rows, {len(valid)} validation rows, "
          f"objective {task_objective.describe()}, {max_trials} trials")  # fmt: skip
    try:
        search.search(search_train, validation_data=valid, epochs=training["epochs"], verbose=verbose)
    except RuntimeError as error:  # keras-tuner stops after consecutive failed trials
        failed = [t.message for t in search.oracle.trials.values() if t.message]
        reason = failed[-1].strip().splitlines()[-1] if failed else str(error).strip().splitlines()[0]
        raise InputError(f"tune: trials keep failing ({reason})") from None
    if is_worker():
        print(f"worker {os.environ['KERASTUNER_TUNER_ID']} done: the chief reports the search in {out_dir}")
        return None
    return report(search, hypermodel, out_dir, data_name)


def report(search: Any, hypermodel: Any, out_dir: Path, data_name: str) -> pd.DataFrame:
    """Prints the leaderboard and front; writes them, the Pareto plot and the best recipe under `out_dir`."""
    import tomli_w

    from tfmtl.tuning import format_leaderboard, leaderboard, plot_pareto_front
    from tfmtl.tuning.leaderboard import front_columns

    trials = search.oracle.trials
    table = leaderboard(trials.values(), hypermodel.tasks, hypermodel.objective)
    if table.empty:
        failed = [t.message for t in trials.values() if t.message]
        reason = failed[-1].strip().splitlines()[-1] if failed else "none ran"
        raise InputError(f"tune: no trial completed ({reason})")
    columns, directions = front_columns(hypermodel.tasks, hypermodel.objective)
    write_atomically(out_dir / "leaderboard.csv", lambda temporary: table.to_csv(temporary, index=False))
    plot = plot_pareto_front(table, columns, directions, out_dir / "pareto.png")
    best = trials[table["trial"].iloc[0]]
    recipe = {k: v for k, v in hypermodel.recipe(best.hyperparameters.copy()).items() if v is not None}
    for key in ("train_data", "test_data"):  # the recipe is read from elsewhere
        if key in recipe:
            recipe[key] = str(Path(recipe[key]).resolve())
    recipe["results"] = {"search": {k: v for k, v in table.iloc[0].items() if k == "objective" or k.startswith("val_")}}
    path = out_dir / "zoo" / data_name / f"{recipe['model']}.toml"
    header = (
        f"# Best of a tfmtl tune search: trial {best.trial_id} of {len(trials)}; objective "
        f"{hypermodel.objective.describe()} = {best.score:.6g} on the validation rows.\n"
        f"# [results] holds its validation metrics. Run: tfmtl train --recipe {path}\n\n"
    )
    text = header + tomli_w.dumps(recipe)
    write_atomically(path, lambda temporary: Path(temporary).write_text(text))
    print(f"\nleaderboard ({len(table)} trials; * on the Pareto front over {', '.join(columns)}):")
    print(format_leaderboard(table))
    print("\nPareto front:")
    shown = ["trial", "objective", *columns, "pareto", *(["model"] if "model" in table else [])]
    print(format_leaderboard(table[table["pareto"]][shown], top=len(table)))
    print(f"\nleaderboard: {out_dir / 'leaderboard.csv'}; Pareto plot: {plot}; best recipe: {path}")
    return table
