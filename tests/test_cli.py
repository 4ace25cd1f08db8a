"""The `tfmtl` command on small files: training, evaluation, recipes and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import tfmtl
from tfmtl.cli.main import main
from tfmtl.cli.recipe import load_recipe, resolve, shipped_recipe
from tfmtl.zoo import MODELS

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "zoo" / "census-income" / "mmoe.toml"


@pytest.fixture(scope="module")
def files(census, tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    train, test = census
    train.head(3000).to_csv(folder / "train.csv.gz", index=False)
    test.head(1000).to_parquet(folder / "test.parquet")
    return folder


def run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("model", ["mmoe", "shared-bottom"])
def test_train_then_evaluate(model, files, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = run(
        capsys, "train", "--model", model, "--train-data", str(files / "train.csv.gz"),
        "--test-data", str(files / "test.parquet"), "--task", "income:binary", "--task", "never_married:binary:marital",
        "--epochs", "2", "--batch-size", "256", "--learning-rate", "0.01", "--seed", "1", "--out", str(out), "--verbose", "0",
    )  # fmt: skip
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["epochs"] == 2 and metrics["batch_size"] == 256
    assert set(metrics["tasks"]) == {"income", "never_married"}
    assert set(metrics["tasks"]["income"]) == {"auc", "logloss"}
    assert metrics["tasks"]["never_married"]["auc"] > 0.9
    assert metrics["train_seconds"] > 0 and metrics["train_examples_per_second"] > 0
    assert "never_married" in stdout and "auc" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.keras", "recipe.json"]

    code, stdout, stderr = run(
        capsys, "evaluate", "--model-path", str(out), "--test-data", str(files / "test.parquet"),
        "--metrics-json", str(tmp_path / "eval.json"),
    )  # fmt: skip
    assert code == 0, stderr
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    assert evaluation["tasks"]["income"]["auc"] == pytest.approx(metrics["tasks"]["income"]["auc"], abs=1e-6)

    # The written recipe reruns the same configuration.
    rerun = resolve(load_recipe(out / "recipe.json"), {})
    assert rerun["training"]["seed"] == 1 and rerun["model"] == model


def test_the_written_recipe_finds_data_given_by_relative_paths(files, tmp_path, capsys, monkeypatch):
    # Paths typed on the command line are relative to where train ran, not to the recipe file.
    monkeypatch.chdir(files.parent)
    out = tmp_path / "run"
    code, _, stderr = run(
        capsys, "train", "--train-data", f"{files.name}/train.csv.gz", "--test-data", f"{files.name}/test.parquet",
        "--task", "income:binary", "--epochs", "1", "--model-arg", "num_experts=2", "--model-arg", "expert_units=[8]",
        "--out", str(out), "--verbose", "0",
    )  # fmt: skip
    assert code == 0, stderr
    monkeypatch.chdir(tmp_path)
    rerun = resolve(load_recipe(out / "recipe.json"), {})
    assert Path(rerun["train_data"]) == files / "train.csv.gz" and Path(rerun["test_data"]) == files / "test.parquet"


def test_a_test_file_of_digit_only_categories_reads_them_as_training_did(tmp_path, capsys):
    # "07" is a category of a text column; a test CSV holding only digits must not turn it into the number 7.
    rng = np.random.default_rng(0)
    zone = rng.choice(["07", "12", "A9"], size=600)
    train = pd.DataFrame({"zone": zone, "x": rng.normal(size=600), "y": (zone == "07").astype(int)})
    test = train[train.zone != "A9"].head(200)
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "run"
    code, _, stderr = run(
        capsys, "train", "--train-data", str(tmp_path / "train.csv"), "--test-data", str(tmp_path / "test.csv"),
        "--task", "y:binary", "--epochs", "3", "--learning-rate", "0.05", "--model-arg", "num_experts=2",
        "--out", str(out), "--verbose", "0",
    )  # fmt: skip
    assert code == 0, stderr
    code, _, stderr = run(capsys, "evaluate", "--model-path", str(out), "--test-data", str(tmp_path / "test.csv"))
    assert code == 0, stderr
    model = keras.saving.load_model(out / "model.keras")
    expected = model.evaluate(tfmtl.data.dataset(test, model.feature_spec, model.tasks), return_dict=True, verbose=0)
    for written in ("metrics.json", "evaluation.json"):
        logloss = json.loads((out / written).read_text())["tasks"]["y"]["logloss"]
        assert logloss == pytest.approx(expected["y_logloss"], abs=1e-5), written


def test_regression_and_multiclass_from_the_command_line(files, tmp_path, capsys):
    code, _, stderr = run(
        capsys, "train", "--train-data", str(files / "train.csv.gz"), "--task", "weeks:regression:weeks_worked",
        "--task", "edu:multiclass:education", "--drop", "income", "--drop", "marital", "--epochs", "1",
        "--model-arg", "num_experts=2", "--model-arg", "expert_units=[16]", "--out", str(tmp_path), "--verbose", "0",
    )  # fmt: skip
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["tasks"]["weeks"]) == {"rmse", "mae"}
    assert set(metrics["tasks"]["edu"]) == {"accuracy", "logloss"}
    assert metrics["test_examples"] == 600  # 20 % held out without --test-data


def test_default_command_is_the_shipped_recipe():
    assert shipped_recipe("mmoe", "census-income") is not None
    from_flags = resolve(None, {"model": "mmoe", "dataset": "census-income"})
    from_recipe = resolve(load_recipe(RECIPE), {})
    assert from_flags == from_recipe
    overridden = resolve(None, {"dataset": "census-income", "training": {"epochs": 5, "seed": 7}})
    assert overridden["training"] == {**from_recipe["training"], "epochs": 5, "seed": 7}
    assert overridden["model_args"] == {"num_experts": 8, "expert_units": [64], "tower_units": [32]}


def error_of(capsys, *args):
    code, _, stderr = run(capsys, *args)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_bad_input_gives_one_line_errors(files, tmp_path, capsys):
    train = str(files / "train.csv.gz")
    common = ["--epochs", "1", "--out", str(tmp_path), "--verbose", "0"]
    assert "unknown model 'xgboost'" in error_of(capsys, "train", "--model", "xgboost", "--train-data", train, "--task", "income:binary", *common)
    assert "unknown kind 'binomial'" in error_of(capsys, "train", "--train-data", train, "--task", "income:binomial")
    assert "label column 'clicked' is not in the training data" in error_of(
        capsys, "train", "--train-data", train, "--task", "ctr:binary:clicked", *common
    )
    assert "binary labels in column 'age' must be 0 or 1" in error_of(
        capsys, "train", "--train-data", train, "--task", "old:binary:age", *common
    )
    assert "--task: give at least one task" in error_of(capsys, "train", "--train-data", train, *common)
    assert "unknown data set 'mnist'" in error_of(capsys, "train", "--dataset", "mnist", *common)
    assert "has no argument(s) ['experts']" in error_of(
        capsys, "train", "--train-data", train, "--task", "income:binary", "--model-arg", "experts=3", *common
    )
    for model_arg, message in [
        ("num_experts=2.5", "model argument num_experts of mmoe: expected an integer, got 2.5"),
        ('num_experts="many"', "model argument num_experts of mmoe: expected an integer, got 'many'"),
        ("expert_units=64", "model argument expert_units of mmoe: expected a list, got 64"),
        ("num_experts=-1", "model arguments (--model-arg, [model_args]): mmoe rejected {'num_experts': -1}: "),
        ("expert_units=[64,", "expert_units: '[64,' is not valid JSON"),
    ]:
        assert message in error_of(
            capsys, "train", "--train-data", train, "--task", "income:binary", "--model-arg", model_arg, *common
        )
    unknown_parent = error_of(
        capsys, "train", "--train-data", train, "--task", "income:binary",
        "--task", "c:binary:marital:parent=nosuch", *common,
    )  # fmt: skip
    assert unknown_parent.startswith("tfmtl train: error: task 'c': parent 'nosuch' is not one of"), unknown_parent
    assert "--seed: expected an integer from 0 to 2**32 - 1, got -1" in error_of(
        capsys, "train", "--train-data", train, "--task", "income:binary", "--seed", "-1", *common
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "is empty" in error_of(capsys, "train", "--train-data", str(empty), "--task", "income:binary", *common)
    text = files / "text_age.csv"
    import pandas as pd

    df = pd.read_csv(train).head(200)
    df.to_csv(files / "numbers.csv", index=False)
    df.astype({"age": object}).assign(age=lambda d: d["age"].where(d.index != 150, "forty")).to_csv(text, index=False)
    line = error_of(
        capsys, "train", "--train-data", str(files / "numbers.csv"), "--test-data", str(text),
        "--task", "income:binary", *common,
    )  # fmt: skip
    assert "test data: column 'age': expected numbers, found 'forty'" in line  # found before training
    df.drop(columns=["education"]).to_csv(files / "no_education.csv", index=False)
    line = error_of(
        capsys, "train", "--train-data", str(files / "numbers.csv"), "--test-data", str(files / "no_education.csv"),
        "--task", "income:binary", *common,
    )  # fmt: skip
    assert "missing feature column(s) ['education']" in line
    assert "no saved model at" in error_of(capsys, "evaluate", "--model-path", str(tmp_path / "nothing"), "--test-data", train)
    assert "expected a positive integer" in error_of(capsys, "train", "--train-data", train, "--task", "income:binary", "--epochs", "0")


def test_console_script_runs_as_a_process(files, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tfmtl.cli.main", "train", "--model", "nope", "--dataset", "census-income"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"tfmtl train: error: --model: unknown model 'nope', expected one of {', '.join(MODELS)}"
    )


def test_a_task_without_labels_in_the_test_set_reports_no_value(census, census_spec, census_tasks):
    import tfmtl
    from tfmtl.cli.train import evaluate_tasks
    from tfmtl.tasks.report import format_table

    model = tfmtl.zoo.SharedBottom(census_spec, census_tasks, bottom_units=[4], tower_units=[2])
    model.compile()
    test = census[1].head(200).assign(marital=np.nan)
    metrics = evaluate_tasks(model, test, batch_size=200)
    assert set(metrics["marital"]) >= {"auc", "logloss"} and set(metrics["marital"].values()) == {None}
    assert all(value is not None for value in metrics["income"].values())
    row = format_table(metrics).splitlines()[-1].split()
    assert row[0] == "marital" and set(row[1:]) == {"-"}
