"""Search with keras-tuner: spaces, the hypermodel, objectives and the Pareto front, the PSO oracle, resuming, workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner
import numpy as np
import pytest

import tfmtl
from tfmtl.cli.main import main
from tfmtl.cli.recipe import load_recipe
from tfmtl.errors import InputError
from tfmtl.tasks import Task
from tfmtl.tuning import (
    MultiTaskHyperModel,
    ParticleSwarmOracle,
    SearchSpace,
    TaskObjective,
    leaderboard,
    pareto_front,
)
from tfmtl.tuning.space import model_arguments, shipped_space
from tfmtl.zoo import MODELS

REPO = Path(__file__).resolve().parents[1]
CENSUS_SPACE = REPO / "tuning" / "census-income.toml"
TASKS = [{"name": "income", "kind": "binary"}, {"name": "marital", "kind": "binary"}]
# A space small enough for searches in subprocesses: one tiny model, two tuned settings.
TINY_SPACE = """
model = "shared-bottom"
[model_args]
tower_units = [4]
[models.shared-bottom]
bottom_units = [8]
[features]
embedding_dim = [2, 4]
[training]
learning_rate = {min = 0.001, max = 0.1, sampling = "log"}
"""


@pytest.fixture(scope="module")
def rows(census):
    train, _ = census
    return train.head(400).reset_index(drop=True), train.iloc[400:600].reset_index(drop=True)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"model": ["mmoe", "no-such-model"]}, "unknown model 'no-such-model'"),
        ({"models": {"nope": {}}}, r"\[models.nope\]: unknown model"),
        ({"models": {"mmoe": {"num_towers": [1, 2]}}}, r"unknown setting\(s\) \['num_towers'\]"),
        ({"models": {"mmoe": {"gate": ["softmax", "top_1"]}}}, "unknown gate 'top_1'"),
        ({"training": {"weighting": ["static", "nash-mtl"]}}, "unknown weighting 'nash-mtl'"),
        ({"training": {"epochs": [1, 2]}}, r"\[training\]: unknown setting"),
        ({"training": {"learning_rate": {"min": 0.1, "max": 0.01}}}, "training.learning_rate"),
        ({"models": {"mmoe": {"expert_units": {"width": [8]}}}}, "expected a value, a list of choices"),
        ({"tasks": {"loss_weight": [1.0, 2.0]}, "training": {"weighting": ["uncertainty"]}}, "need static weighting"),
        ({"search": {}}, r"unknown section\(s\) \['search'\]"),
        ({"models": {"mmoe": {"num_experts": {"min": 2, "max": 8, "step": 0}}}}, "step must be positive, got 0"),
        ({"training": {"learning_rate": {"min": 1e-4, "max": 1e-2, "default": 5}}}, "default 5 is outside"),
        ({"training": {"learning_rate": ["fast", "slow"]}}, "expected positive numbers, got 'fast'"),
        ({"models": {"mmoe": {"expert_units": {"width": {"min": -8, "max": 8}, "depth": 1}}}}, "width: expected positive"),
        ({"tasks": {"loss_weight": {"min": -1.0, "max": 2.0}}}, "loss_weight: expected non-negative numbers"),
    ],
)
def test_space_rejects_what_does_not_exist_in_one_line(config, message):
    with pytest.raises(InputError, match=message) as error:
        SearchSpace(config)
    assert "\n" not in str(error.value)


def test_space_files_in_every_format_read_alike(tmp_path):
    space = {"model": ["mmoe"], "training": {"learning_rate": {"min": 0.001, "max": 0.01}}}
    (tmp_path / "s.json").write_text(json.dumps(space))
    (tmp_path / "s.yaml").write_text("model: [mmoe]\ntraining:\n  learning_rate: {min: 0.001, max: 0.01}\n")
    (tmp_path / "s.toml").write_text('model = ["mmoe"]\n[training]\nlearning_rate = {min = 0.001, max = 0.01}\n')
    assert {json.dumps(SearchSpace.load(tmp_path / f"s.{s}").config) for s in ("json", "yaml", "toml")} == {json.dumps(space)}
    (tmp_path / "bad.toml").write_text("model = [")
    with pytest.raises(InputError, match="is not valid TOML"):
        SearchSpace.load(tmp_path / "bad.toml")


def test_shipped_space_holds_every_zoo_reference_configuration(rows):
    space = SearchSpace.load(CENSUS_SPACE)
    hypermodel = MultiTaskHyperModel(space, rows[0], {"tasks": TASKS})
    references = sorted((REPO / "zoo" / "census-income").glob("*.toml"))
    assert references
    for path in references:
        reference = load_recipe(path)
        hp = keras_tuner.HyperParameters()
        hp.values = space.values_for(reference)
        recipe = hypermodel.recipe(hp)
        assert recipe["model"] == reference["model"]
        assert {k: recipe["model_args"][k] for k in reference["model_args"]} == reference["model_args"], path.name
        defaults = {k: p.default for k, p in model_arguments(reference["model"]).items()}
        for key, value in recipe["model_args"].items():
            if key not in reference["model_args"]:
                assert value == defaults[key], (path.name, key)
        for key in ("learning_rate", "weighting"):
            assert recipe["training"][key] == reference["training"][key]
        assert recipe["features"]["embedding_dim"] == reference["features"]["embedding_dim"]
    changed = {**load_recipe(references[0]), "model_args": {"tower_units": [48]}}
    with pytest.raises(InputError, match="tower_width: 48 is not among"):
        space.values_for(changed)


def test_hypermodel_builds_and_trains_every_zoo_family_for_a_step(rows):
    train, valid = rows
    space = SearchSpace.load(CENSUS_SPACE)
    hypermodel = MultiTaskHyperModel(space, train, {"tasks": TASKS, "training": {"batch_size": 400}})
    for model_name in MODELS:  # whatever the zoo holds now
        hp = keras_tuner.HyperParameters()
        hp.values["model"] = model_name
        model = hypermodel.build(hp)
        assert type(model) is MODELS[model_name]
        model.run_eagerly = True  # tracing eight models would take minutes here; the searches below run graphs
        reported = hypermodel.fit(hp, model, train, validation_data=valid, epochs=1, verbose=0)
        assert set(reported) == {"objective", "val_income_auc", "val_income_logloss", "val_marital_auc", "val_marital_logloss"}
        assert reported["objective"] == pytest.approx((reported["val_income_auc"] + reported["val_marital_auc"]) / 2)


def test_loss_weights_apply_only_under_static_weighting(rows):
    space = SearchSpace({"model": "mmoe", "training": {"weighting": ["static", "uncertainty"]},
                         "tasks": {"loss_weight": {"min": 0.5, "max": 2.0}}})  # fmt: skip
    hypermodel = MultiTaskHyperModel(space, rows[0], {"tasks": TASKS})
    hp = keras_tuner.HyperParameters()
    hp.values.update({"weighting": "static", "loss_weight/income": 2.0, "loss_weight/marital": 0.5})
    recipe = hypermodel.recipe(hp)
    assert [t["loss_weight"] for t in recipe["tasks"]] == [2.0, 0.5]
    assert [t.loss_weight for t in hypermodel.build(hp).tasks] == [2.0, 0.5]
    hp.values["weighting"] = "uncertainty"
    assert all("loss_weight" not in t for t in hypermodel.recipe(hp)["tasks"])


def test_objective_directions_weights_and_errors():
    tasks = [Task("income", "binary"), Task("marital", "binary"), Task("rating", "regression")]
    metrics = {"income": {"auc": 0.9, "logloss": 0.2}, "marital": {"auc": 0.6, "logloss": 0.5}, "rating": {"rmse": 1.5, "mae": 1.0}}
    mean_auc = TaskObjective.parse(None, tasks)
    assert mean_auc.terms == (("income", "auc", 1.0), ("marital", "auc", 1.0))
    assert (mean_auc.value(metrics), mean_auc.direction) == (pytest.approx(0.75), "max")
    weighted = TaskObjective.parse("income:auc=3, marital:auc", tasks)
    assert weighted.value(metrics) == pytest.approx((3 * 0.9 + 0.6) / 4)
    logloss = TaskObjective.parse("logloss", tasks)
    assert (logloss.value(metrics), logloss.keras_objective.direction) == (pytest.approx(0.35), "min")
    single = TaskObjective.parse("rating:rmse", tasks)
    assert (single.value(metrics), single.direction) == (1.5, "min")
    mixed = TaskObjective.parse("income:auc,rating:rmse", tasks)  # lower RMSE must raise the objective
    assert (mixed.value(metrics), mixed.direction) == (pytest.approx((0.9 - 1.5) / 2), "max")
    assert mixed.report(metrics)["val_rating_mae"] == 1.0
    for text, message in [("income:rmse", "reports auc, logloss, not 'rmse'"), ("clicks:auc", "unknown task 'clicks'"),
                          ("income:f1", "unknown metric 'f1'"), ("income:auc=-1", "must be a positive number"),
                          ("income:auc=inf", "must be a positive number")]:  # fmt: skip
        with pytest.raises(InputError, match=message):
            TaskObjective.parse(text, tasks)


def test_pareto_front_on_hand_made_points():
    points = np.array([[0.9, 0.5], [0.8, 0.6], [0.7, 0.4], [0.9, 0.5], [0.85, 0.55], [np.nan, 0.9], [0.6, 0.6]])
    assert pareto_front(points, ["max", "max"]).tolist() == [True, True, False, True, True, False, False]
    # Lower is better on the second metric: (0.7, 0.4) now beats (0.8, 0.6) and (0.6, 0.6) on nothing.
    assert pareto_front(points, ["max", "min"]).tolist() == [True, False, True, True, False, False, False]
    with pytest.raises(InputError, match="expected shape"):
        pareto_front(points, ["max"])


def hand_made_trial(trial_id: str, metrics: dict, model: str) -> keras_tuner.engine.trial.Trial:
    hp = keras_tuner.HyperParameters()
    hp.Choice("model", ["mmoe", "ple"])
    hp.values["model"] = model
    trial = keras_tuner.engine.trial.Trial(hp, trial_id=trial_id, status="COMPLETED")
    for name, value in metrics.items():
        trial.metrics.update(name, value)
    return trial


def test_leaderboard_ranks_by_objective_and_marks_the_front():
    tasks = [Task("income", "binary"), Task("marital", "binary")]
    objective = TaskObjective.parse(None, tasks)
    results = {"0": (0.90, 0.50), "1": (0.80, 0.70), "2": (0.70, 0.60), "3": (0.95, 0.40)}
    trials = []
    for trial_id, (income, marital) in results.items():
        per_task = {"income": {"auc": income, "logloss": 0.3}, "marital": {"auc": marital, "logloss": 0.4}}
        trials.append(hand_made_trial(trial_id, objective.report(per_task), "ple" if trial_id == "1" else "mmoe"))
    trials.append(keras_tuner.engine.trial.Trial(keras_tuner.HyperParameters(), trial_id="4", status="FAILED"))
    table = leaderboard(trials, tasks, objective)
    assert table["trial"].tolist() == ["1", "0", "3", "2"]  # means 0.75, 0.70, 0.675, 0.65
    assert table["objective"].tolist() == pytest.approx([0.75, 0.70, 0.675, 0.65])
    assert dict(zip(table["trial"], table["pareto"])) == {"1": True, "0": True, "3": True, "2": False}
    assert table.loc[0, "model"] == "ple" and table.loc[0, "val_marital_auc"] == pytest.approx(0.7)


def shifted_quadratic(values: dict) -> float:
    """Minimum 0 at x = 1.3, y = -2.2 (floats, one on a log scale), n = 13 (integer), c = 'e' (choice)."""
    penalty = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0, "e": 0.0, "f": 1.5}
    return (
        (values["x"] - 1.3) ** 2 + (values["y"] + 2.2) ** 2 + ((values["n"] - 13) / 4) ** 2
        + (np.log10(values["lr"]) + 2.5) ** 2 + penalty[values["c"]]
    )  # fmt: skip


def best_found(oracle: keras_tuner.Oracle, directory: Path, trials: int) -> float:
    oracle._set_project_dir(str(directory), "search")
    oracle.verbose = 0
    for _ in range(trials):
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"loss": shifted_quadratic(trial.hyperparameters.values)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return oracle.get_best_trials(1)[0].score


def test_particle_swarm_gets_closer_to_the_optimum_than_random_search(tmp_path):
    hp = keras_tuner.HyperParameters()
    hp.Float("x", -5.0, 5.0)
    hp.Float("y", -5.0, 5.0)
    hp.Int("n", 0, 40)
    hp.Float("lr", 1e-5, 1e-1, sampling="log")
    hp.Choice("c", ["a", "b", "c", "d", "e", "f"])
    objective, trials = keras_tuner.Objective("loss", "min"), 40
    swarm, random = [], []
    for seed in range(1, 6):
        pso = ParticleSwarmOracle(objective, max_trials=trials, hyperparameters=hp.copy(), seed=seed)
        swarm.append(best_found(pso, tmp_path / f"pso{seed}", trials))
        baseline = keras_tuner.oracles.RandomSearchOracle(objective, max_trials=trials, hyperparameters=hp.copy(), seed=seed)
        random.append(best_found(baseline, tmp_path / f"random{seed}", trials))
    assert np.mean(swarm) < np.mean(random), (swarm, random)
    assert sum(s < r for s, r in zip(swarm, random)) >= 4, (swarm, random)


def test_particle_swarm_starts_at_initial_values_and_resumes_from_its_state(tmp_path):
    hp = keras_tuner.HyperParameters()
    hp.Float("x", -5.0, 5.0)
    hp.Int("n", 0, 40)
    hp.Choice("c", ["a", "b", "c", "d", "e", "f"])
    start = {"x": 1.3, "n": 13, "c": "e"}

    def oracle():
        made = ParticleSwarmOracle(keras_tuner.Objective("loss", "min"), max_trials=12, hyperparameters=hp.copy(),
                                   initial_values=[start], seed=3)  # fmt: skip
        made._set_project_dir(str(tmp_path), "search")
        made.verbose = 0
        return made

    def run(made, count):
        values = []
        for _ in range(count):
            trial = made.create_trial("tuner0")
            values.append(trial.hyperparameters.values)
            made.update_trial(trial.trial_id, {"loss": shifted_quadratic({**trial.hyperparameters.values, "y": -2.2, "lr": 10**-2.5})})
            trial.status = "COMPLETED"
            made.end_trial(trial)
        return values

    uninterrupted = run(oracle(), 8)
    assert uninterrupted[0]["n"] == 13 and uninterrupted[0]["c"] == "e" and uninterrupted[0]["x"] == pytest.approx(1.3)
    (tmp_path / "search").rename(tmp_path / "first")
    first = oracle()
    run(first, 5)
    resumed = oracle()
    resumed.reload()
    assert run(resumed, 3) == uninterrupted[5:]


def write_tiny_search(tmp_path: Path, rows) -> list[str]:
    rows[0].to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "space.toml").write_text(TINY_SPACE)
    return [
        sys.executable, "-m", "tfmtl.cli.main", "tune", "--train-data", str(tmp_path / "train.csv"),
        "--task", "income:binary", "--task", "marital:binary", "--space", str(tmp_path / "space.toml"),
        "--epochs", "1", "--batch-size", "128", "--validation-fraction", "0.25", "--max-trials", "3",
        "--out", str(tmp_path / "out"), "--verbose", "1",
    ]  # fmt: skip


def quiet_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", **extra}


def completed_trials(out: Path) -> dict[str, dict]:
    trials = {}
    for path in (out / "search").glob("trial_*/trial.json"):
        trial = json.loads(path.read_text())
        if trial["status"] == "COMPLETED":
            trials[trial["trial_id"]] = trial
    return trials


def test_search_killed_after_some_trials_resumes_keeping_them(tmp_path, rows, capsys):
    command = write_tiny_search(tmp_path, rows)
    out = tmp_path / "out"
    first = subprocess.Popen(command, env=quiet_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(completed_trials(out)) < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    kept = completed_trials(out)
    assert len(kept) == 2, "the search ended before it could be killed mid-way"
    kept_files = {i: (out / "search" / f"trial_{i}" / "trial.json").read_text() for i in kept}

    rerun = subprocess.run(command, env=quiet_env(), capture_output=True, text=True, timeout=150)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    finished = completed_trials(out)
    assert sorted(finished) == ["0", "1", "2"]
    assert {i: (out / "search" / f"trial_{i}" / "trial.json").read_text() for i in kept} == kept_files
    assert rerun.stdout.count("Running Trial") == 1  # only the unfinished one ran
    assert "leaderboard (3 trials" in rerun.stdout
    best = next((out / "zoo" / "train").glob("*.toml"))
    recipe = load_recipe(best)
    assert recipe["model"] == "shared-bottom" and recipe["model_args"]["bottom_units"] == [8]
    assert (out / "pareto.png").stat().st_size > 0

    assert main([*command[3:], "--tuner", "random"]) == 2
    assert "holds a search with other tuner" in capsys.readouterr().err
    assert main([*command[3:], "--drop", "age"]) == 2  # other features: other trials
    assert "holds a search with other drop" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_chief_and_two_workers_share_one_search(tmp_path, rows):
    command = write_tiny_search(tmp_path, rows)
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port())}
    processes = {
        name: subprocess.Popen(command, env=quiet_env(KERASTUNER_TUNER_ID=name, **oracle), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
        for name in ("chief", "tuner0", "tuner1")
    }
    outputs = {}
    try:
        for name, process in processes.items():
            outputs[name], _ = process.communicate(timeout=170)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    assert {name: p.returncode for name, p in processes.items()} == {"chief": 0, "tuner0": 0, "tuner1": 0}, outputs
    out = tmp_path / "out"
    assert sorted(completed_trials(out)) == ["0", "1", "2"]
    assert outputs["chief"].count("Running Trial") == 3  # each trial handed out once, none retried
    assert (out / "search" / "tuner0.json").is_file() and (out / "search" / "tuner1.json").is_file()  # both worked
    assert "leaderboard (3 trials" in outputs["chief"] and "worker tuner0 done" in outputs["tuner0"]


def test_a_task_without_labelled_validation_rows_stops_the_search_before_any_trial(tmp_path, rows, capsys):
    data = tmp_path / "train.csv"
    rows[0].assign(marital=np.nan).to_csv(data, index=False)  # marital is labelled nowhere
    code = main(["tune", "--train-data", str(data), "--task", "income:binary", "--task", "marital:binary",
                 "--max-trials", "2", "--epochs", "1", "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    captured = capsys.readouterr()
    assert "the validation rows have no labels of task(s) ['marital']" in captured.err
    assert not (tmp_path / "out" / "search").exists()
    assert "holding out" not in captured.out  # the search reads no test set, so it sets no rows apart for one


def test_feature_names_of_a_space_must_be_columns_of_the_data(tmp_path, rows, capsys):
    """The shipped space's PEPNet priors are Census columns: other data searches PEPNet without them."""
    data = tmp_path / "train.csv"
    # No class_worker or sex column; marital unlabelled stops the run before any trial.
    rows[0].drop(columns=["class_worker", "sex"]).assign(marital=np.nan).to_csv(data, index=False)
    args = ["tune", "--train-data", str(data), "--task", "income:binary", "--task", "marital:binary",
            "--max-trials", "2", "--epochs", "1", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    out = capsys.readouterr().out
    assert "pepnet: searched with its default domain_features (the shipped space names ['class_worker']" in out
    assert "pepnet: searched with its default personal_features (the shipped space names ['sex']" in out
    space = tmp_path / "space.toml"
    space.write_text('model = ["pepnet"]\n[models.pepnet]\ndomain_features = {value = ["class_worker"]}\n')
    assert main([*args, "--space", str(space)]) == 2
    assert "--space: [models.pepnet] domain_features names ['class_worker'], which are not columns of the data" in (
        capsys.readouterr().err
    )
    shipped = SearchSpace.load(shipped_space(None))
    assert shipped.missing_features(list(rows[0].columns)) == {}
    left = shipped.without([("pepnet", "domain_features")])
    assert "domain_features" not in left.models["pepnet"] and "personal_features" in left.models["pepnet"]

def test_a_built_model_builds_from_its_config_again_for_keras_tuner(rows):
    # Hyperband rebuilds a trial's model with build_from_config before loading its weights.
    features = tfmtl.FeatureSpec.infer(rows[0], exclude=["income", "marital"])
    model = tfmtl.zoo.MMoE(features, [Task("income", "binary"), Task("marital", "binary")], num_experts=2, expert_units=[4])
    weights = model.get_weights()
    model.build_from_config(model.get_build_config())
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
