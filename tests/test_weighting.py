"""Task weighting: closed forms, behaviour, every model x strategy, and exactness under tf.distribute."""

import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfmtl
from tfmtl import Task
from tfmtl.data import dataset
from tfmtl.cli.main import main
from tfmtl.weighting import (
    FAMO,
    MGDA,
    STRATEGIES,
    AlignedMTL,
    CAGrad,
    DynamicWeightAverage,
    GradNorm,
    PCGrad,
    StaticWeighting,
    UncertaintyWeighting,
)
from tfmtl.weighting.mgda import min_norm_weights
from tfmtl.zoo import MODELS

REPO = Path(__file__).resolve().parents[1]


def combine(strategy, gradients):
    strategy.build([Task(f"t{i}", "binary") for i in range(len(gradients))])
    gradients = tf.constant(gradients, tf.float32)
    combined, weights = strategy.combine_gradients(gradients, tf.ones(len(gradients)))
    return combined.numpy(), weights.numpy()


def test_pcgrad_projects_conflicting_gradients():
    combined, _ = combine(PCGrad(seed=0), [[1.0, 0.0], [-1.0, 1.0]])
    # g1 - (g1.g2/|g2|^2) g2 = [0.5, 0.5];  g2 - (g2.g1/|g1|^2) g1 = [0, 1]
    np.testing.assert_allclose(combined, [0.5, 1.5], atol=1e-6)
    combined, _ = combine(PCGrad(), [[1.0, 2.0], [3.0, 1.0]])  # no conflict: plain sum
    np.testing.assert_allclose(combined, [4.0, 3.0], atol=1e-6)


def test_mgda_min_norm_point_of_two_vectors():
    combined, weights = combine(MGDA(), [[1.0, 0.0], [0.0, 2.0]])
    # alpha = (g2.g2 - g1.g2) / |g1 - g2|^2 = 4 / 5
    np.testing.assert_allclose(weights, [0.8, 0.2], atol=1e-6)
    np.testing.assert_allclose(combined, [0.8, 0.4], atol=1e-6)
    _, weights = combine(MGDA(), [[1.0, 0.0], [2.0, 0.0]])  # the shorter one wins
    np.testing.assert_allclose(weights, [1.0, 0.0], atol=1e-6)


def test_mgda_frank_wolfe_matches_a_grid_search_for_three_tasks():
    g = np.array([[1.0, 0.2, 0.0], [-0.5, 1.0, 0.3], [0.1, -0.4, 1.5]], np.float32)
    weights = min_norm_weights(tf.constant(g @ g.T), iterations=200).numpy()
    grid = [(a, b, 1 - a - b) for a in np.linspace(0, 1, 201) for b in np.linspace(0, 1, 201) if a + b <= 1]
    best = min(np.linalg.norm(np.array(w) @ g) for w in grid)
    assert np.linalg.norm(weights @ g) <= best + 1e-3
    assert weights.min() >= -1e-6 and abs(weights.sum() - 1) < 1e-5


def test_mgda_weights_are_the_exact_min_norm_point_for_several_tasks():
    # Optimality on the simplex: every task's g_i.d is at least |d|^2, with equality for the tasks it weights.
    rng = np.random.default_rng(2)
    for num_tasks in (3, 4, 6, 3, 4, 6):
        g = rng.normal(size=(num_tasks, 20))
        g[1] -= 0.9 * g[0] * rng.uniform(0, 3)  # conflicting tasks
        g *= rng.uniform(0.1, 10, size=(num_tasks, 1))
        weights = min_norm_weights(tf.constant(g @ g.T, tf.float32)).numpy().astype(np.float64)
        d = weights @ g
        reach, norm = g @ d, d @ d
        assert weights.min() >= 0 and abs(weights.sum() - 1) < 1e-5
        assert reach.min() >= norm - 1e-4 * (g * g).sum(1).max(), (reach, norm)
        np.testing.assert_allclose(reach[weights > 1e-4], norm, rtol=1e-3, atol=1e-4 * (g * g).sum(1).max())


def test_mgda_finds_the_zero_combination_of_conflicting_gradients():
    """Where a convex combination of the gradients is 0 (the Gram matrix is singular), that is the min-norm point."""
    cases = {
        "opposite": ([[2.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], [1 / 3, 2 / 3]),
        "zero inside the hull": ([[1.0, 0.0, 0.0], [-0.5, 0.8, 0.0], [-0.5, -0.8, 0.0]], [1 / 3, 1 / 3, 1 / 3]),
    }
    for name, (g, expected) in cases.items():
        combined, weights = combine(MGDA(), g)
        np.testing.assert_allclose(weights, expected, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(combined, 0.0, atol=1e-5, err_msg=name)
    for eps in (1e-3, 1e-5):  # nearly stationary: a small step that lowers no task's loss less than |d|^2
        g = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-0.5, -0.5, eps]])
        combined, weights = combine(MGDA(), g.tolist())
        np.testing.assert_allclose(weights, [0.25, 0.25, 0.5], atol=1e-4)
        assert np.linalg.norm(combined) == pytest.approx(eps / 2, rel=1e-2)

def test_cagrad_with_c_zero_is_the_average_gradient():
    g = [[1.0, -2.0, 0.5], [-3.0, 1.0, 2.0]]
    combined, _ = combine(CAGrad(c=0.0), g)
    np.testing.assert_allclose(combined, np.mean(g, axis=0), atol=1e-5)
    # With c > 0 the worst-off task does better than under the average.
    combined, _ = combine(CAGrad(c=0.5), g)
    g = np.array(g)
    assert min(g @ combined) > min(g @ g.mean(0)) - 1e-6


def test_cagrad_solves_its_dual_exactly_when_gradient_norms_differ():
    """The dual min_w g_w.g0 + c|g0||g_w| over the simplex, checked by a grid search; norms 1 to 30 apart."""
    g = np.array([[30.0, 2.0, -1.0, 0.0], [-1.0, 1.0, 0.5, 0.2], [0.3, -2.0, 4.0, 1.0]])
    g0 = g.mean(0)
    radius = 0.5 * np.linalg.norm(g0)
    grid = np.array([(a, b, 1 - a - b) for a in np.linspace(0, 1, 401) for b in np.linspace(0, 1, 401) if a + b <= 1])
    dual = grid @ g @ g0 + radius * np.linalg.norm(grid @ g, axis=1)
    w = grid[np.argmin(dual)]
    g_w = w @ g
    expected = (g0 + radius * g_w / np.linalg.norm(g_w)) / 1.25
    combined, _ = combine(CAGrad(c=0.5), g.tolist())
    np.testing.assert_allclose(combined, expected, rtol=2e-2, atol=2e-2 * np.linalg.norm(expected))
    assert min(g @ combined) == pytest.approx(min(g @ expected), rel=2e-2)

def test_aligned_mtl_on_orthogonal_gradients():
    combined, weights = combine(AlignedMTL(), [[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # Each gradient rescaled to the smallest norm, then summed.
    np.testing.assert_allclose(combined, [1.0, 1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(weights, [1 / 3, 1.0], atol=1e-5)


def test_cagrad_finds_the_same_direction_at_any_gradient_scale():
    # Loss scaling under mixed precision multiplies gradients by thousands; small losses divide them.
    g = np.array([[3.0, -1.0, 2.0, 0.5, -4.0], [-2.0, 4.0, 1.0, -3.0, 1.0], [5.0, 2.0, -6.0, 1.0, 2.0]], np.float32)
    weights = {scale: combine(CAGrad(c=0.5), (g * scale).tolist())[1] for scale in (1e-3, 1.0, 1e3)}
    np.testing.assert_allclose(weights[1e-3], weights[1.0], atol=2e-3)
    np.testing.assert_allclose(weights[1e3], weights[1.0], atol=2e-3)
    combined = weights[1.0] @ g
    assert min(g @ combined) > min(g @ g.mean(0))  # the worst-off task does better than under the average


def test_aligned_mtl_keeps_its_scale_when_one_gradient_is_the_sum_of_the_others():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(2, 50)).astype(np.float32) * 10
    g = np.vstack([g, g[0] + g[1]])  # rank 2: the third eigenvalue is float32 rounding
    combined, _ = combine(AlignedMTL(), g.tolist())
    values, vectors = np.linalg.eigh((g @ g.T).astype(np.float64))
    kept = values > values.max() * 3 * np.finfo(np.float32).eps  # the reference's cut-off
    balance = np.sqrt(values[kept].min()) * (vectors[:, kept] / np.sqrt(values[kept])) @ vectors[:, kept].T
    np.testing.assert_allclose(combined, balance.sum(0) @ g, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize("rows", [[[1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]])
def test_mgda_leaves_out_a_task_without_gradient(rows):
    # A task with no labels in the batch has a zero gradient, which would be the min-norm point.
    combined, weights = combine(MGDA(), rows)
    assert weights[-1] == 0 and np.linalg.norm(combined) > 0.1


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_reports_weights_before_its_first_step(name):
    strategy = STRATEGIES[name]()
    strategy.build([Task("t1", "binary"), Task("t2", "binary")])
    weights = np.asarray(strategy.task_weights())
    assert weights.shape == (2,) and np.isfinite(weights).all()


def test_dwa_after_an_epoch_without_labels_weighs_tasks_equally():
    dwa = DynamicWeightAverage()
    dwa.build([Task("t1", "binary"), Task("t2", "binary")])
    dwa.end_epoch({"t1_loss": 1.0, "t2_loss": 1.0})
    dwa.end_epoch({"t1_loss": 0.5, "t2_loss": 0.0})  # t2 had no labelled example
    np.testing.assert_allclose(dwa.task_weights().numpy(), [1.0, 1.0])


def test_static_weights_equal_keras_loss_weights(census, census_spec, census_tasks):
    df = census[0].head(512)
    ours = tfmtl.zoo.MMoE(census_spec, census_tasks, num_experts=2, expert_units=[8], tower_units=[4])
    ours.compile(optimizer=keras.optimizers.SGD(0.5), weighting=StaticWeighting({"income": 3.0, "marital": 0.5}))
    twin = tfmtl.zoo.MMoE.from_config(ours.get_config())
    twin.set_weights(ours.get_weights())

    class Plain(keras.Model):  # the same network under Keras' own compile/fit
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, inputs):
            return self.inner(inputs)

    plain = Plain(twin)
    plain.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss={"income": "binary_crossentropy", "marital": "binary_crossentropy"},
        loss_weights={"income": 3.0, "marital": 0.5},
    )
    x, y = tfmtl.data.model_arrays(df, census_spec, census_tasks)
    ours.fit(dataset(df, census_spec, census_tasks, batch_size=512), epochs=2, verbose=0)
    plain.fit(x, y, batch_size=512, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_uncertainty_weights_follow_the_noise_ratio():
    rng = np.random.default_rng(0)
    n, sigma1, sigma2 = 4096, 0.5, 2.0
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    df["y1"] = df["a"] + sigma1 * rng.normal(size=n)
    df["y2"] = df["b"] + sigma2 * rng.normal(size=n)
    tasks = [Task("y1", "regression"), Task("y2", "regression")]
    spec = tfmtl.FeatureSpec.infer(df, exclude=["y1", "y2"])
    model = tfmtl.zoo.SharedBottom(spec, tasks, bottom_units=[16], tower_units=[])
    model.compile(optimizer=keras.optimizers.Adam(0.02), weighting=UncertaintyWeighting())
    model.fit(dataset(df, spec, tasks, batch_size=512, shuffle=True, seed=0), epochs=40, verbose=0)
    w1, w2 = keras.ops.convert_to_numpy(model.weighting.task_weights())
    assert w1 / w2 == pytest.approx(sigma2**2 / sigma1**2, rel=0.1)


def bottleneck_tasks(epochs, weighting):
    """Two regression tasks, the second on 3x the scale, that compete for one shared linear unit.

    Returns each task's relative training rate `L_t(end) / L_t(start)` on the
    training data, and the fit history. Under static weighting the larger task takes
    the unit and the other barely trains.
    """
    rng = np.random.default_rng(0)
    n = 2048
    x = rng.normal(size=(n, 4))
    df = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    df["y1"] = x[:, 0] + 0.1 * rng.normal(size=n)
    df["y2"] = 3.0 * (x[:, 1] + 0.1 * rng.normal(size=n))
    tasks = [Task("y1", "regression"), Task("y2", "regression")]
    spec = tfmtl.FeatureSpec.infer(df, exclude=["y1", "y2"])
    model = tfmtl.zoo.SharedBottom(spec, tasks, bottom_units=[1], bottom_activation="linear", tower_units=[])
    model.compile(optimizer=keras.optimizers.Adam(0.05), weighting=weighting)
    whole = dataset(df, spec, tasks, batch_size=n)
    before = model.evaluate(whole, verbose=0, return_dict=True)
    data = dataset(df, spec, tasks, batch_size=256, shuffle=True, seed=0)
    history = model.fit(data, epochs=epochs, verbose=0).history
    after = model.evaluate(whole, verbose=0, return_dict=True)
    rates = np.array([after[f"{t}_loss"] / before[f"{t}_loss"] for t in ("y1", "y2")])
    return rates, history


def test_gradnorm_brings_the_relative_training_rates_together():
    static_rates, _ = bottleneck_tasks(15, "static")
    rates, history = bottleneck_tasks(15, GradNorm(alpha=1.5))
    static_gap, gap = abs(np.log(static_rates[0] / static_rates[1])), abs(np.log(rates[0] / rates[1]))
    assert static_gap > 2.0  # static: y2 trains, y1 barely does
    assert gap < 0.25 * static_gap, (static_rates, rates)
    # The slower task has gained weight; the weights still sum to the number of tasks.
    assert history["y1_weight"][-1] > 1.2 > 0.8 > history["y2_weight"][-1]
    assert history["y1_weight"][-1] + history["y2_weight"][-1] == pytest.approx(2.0, rel=1e-5)


def test_famo_gives_the_task_whose_loss_falls_slower_more_weight():
    rates, history = bottleneck_tasks(15, FAMO())
    assert rates[0] > 10 * rates[1]  # y1 falls slower...
    assert history["y1_weight"][-1] > 0.55 > 0.45 > history["y2_weight"][-1]  # ...and gets the larger weight
    # By hand: task 2's loss halves, task 1's stays; the first update (no previous loss) leaves xi at 0.
    famo = FAMO(learning_rate=0.025, decay=0.01)
    famo.build([Task("t1", "binary"), Task("t2", "binary")])
    famo.update(tf.constant([1.0, 1.0]), None)
    np.testing.assert_array_equal(famo.logits.numpy(), [0.0, 0.0])
    famo.update(tf.constant([1.0, 0.5]), None)
    logits = famo.logits.numpy()
    # Adam's first real step moves each logit by its learning rate: the first update did not count as a step.
    assert logits[0] == pytest.approx(0.025, rel=1e-3) and logits[1] == pytest.approx(-logits[0])


def test_dwa_weights_follow_the_ratio_of_the_last_two_epochs_losses():
    dwa = DynamicWeightAverage(temperature=2.0)
    dwa.build([Task("t1", "binary"), Task("t2", "binary"), Task("t3", "binary")])
    dwa.end_epoch({"t1_loss": 1.0, "t2_loss": 1.0, "t3_loss": 2.0})
    np.testing.assert_allclose(dwa.task_weights().numpy(), [1.0, 1.0, 1.0])  # one epoch: no ratio yet
    dwa.end_epoch({"t1_loss": 0.9, "t2_loss": 0.5, "t3_loss": 2.0})
    ratios = np.array([0.9, 0.5, 1.0])
    expected = 3 * np.exp(ratios / 2) / np.exp(ratios / 2).sum()
    np.testing.assert_allclose(dwa.task_weights().numpy(), expected, rtol=1e-5)
    assert expected.sum() == pytest.approx(3.0) and expected[2] > expected[0] > expected[1]
    # In fit: the third epoch's weights come from the first two epochs' logged losses.
    _, history = bottleneck_tasks(3, "dwa")
    ratios = np.array([history[f"{t}_loss"][1] / history[f"{t}_loss"][0] for t in ("y1", "y2")])
    expected = 2 * np.exp(ratios / 2) / np.exp(ratios / 2).sum()
    assert history["y1_weight"][:2] == [1.0, 1.0]
    np.testing.assert_allclose([history["y1_weight"][2], history["y2_weight"][2]], expected, rtol=1e-5)
    assert expected[0] > expected[1]  # y1's loss fell slower


def test_user_callbacks_see_the_epoch_state_of_dwa(census, census_spec, census_tasks):
    # Checkpoints and backups are user callbacks: at an epoch's end DWA must already hold that epoch's losses.
    model = tfmtl.zoo.SharedBottom(census_spec, census_tasks, bottom_units=[8], tower_units=[4])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), weighting="dwa")
    seen = []
    snapshot = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append((model.weighting.epoch_losses.numpy()[1], logs))
    )
    model.fit(dataset(census[0].head(512), census_spec, census_tasks, batch_size=256), epochs=2, verbose=0,
              callbacks=[snapshot])  # fmt: skip
    for recorded, logs in seen:
        np.testing.assert_allclose(recorded, [logs["income_loss"], logs["marital_loss"]], rtol=1e-6)


@pytest.mark.parametrize("name", ["dwa", "gradnorm", "famo"])
def test_stateful_strategies_save_and_reload_their_state(name, census, census_spec, census_tasks, tmp_path):
    df = census[0].head(512)
    model = tfmtl.zoo.MMoE(census_spec, census_tasks, num_experts=2, expert_units=[8], tower_units=[4])
    model.compile(optimizer=keras.optimizers.Adam(0.01), weighting=name)
    model.fit(dataset(df, census_spec, census_tasks, batch_size=128), epochs=2, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.weighting) is STRATEGIES[name]
    assert len(loaded.weighting.variables) == len(model.weighting.variables)
    for a, b in zip(model.weighting.variables, loaded.weighting.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert not np.allclose(keras.ops.convert_to_numpy(model.weighting.task_weights()), 1.0 if name != "famo" else 0.5)


@pytest.mark.parametrize("strategy", ["uncertainty", "famo"])
def test_monitoring_gradients_does_not_change_a_loss_level_update(strategy, census, census_spec, census_tasks):
    # With per-task gradients at hand the shared parameters' update is built from them: it must be the same.
    df = census[0].head(512).copy()
    df.loc[df.index[::4], "income"] = np.nan
    models = []
    for monitor in (False, True):
        keras.utils.set_random_seed(0)
        model = tfmtl.zoo.MMoE(census_spec, census_tasks, num_experts=2, expert_units=[8], tower_units=[4])
        model.compile(optimizer=keras.optimizers.Adam(0.01), weighting=strategy, monitor_gradients=monitor)
        model.fit(dataset(df, census_spec, census_tasks, batch_size=128), epochs=1, verbose=0)
        models.append(model)
    states = [m.get_weights() + [keras.ops.convert_to_numpy(v) for v in m.weighting.variables] for m in models]
    for a, b in zip(*states):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_train_help_names_every_strategy(capsys):
    assert main(["train", "--help"]) == 0
    help_text = "".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in STRATEGIES), help_text


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_model_trains_with_every_strategy(model_name, strategy, census, census_spec, census_tasks):
    df = census[0].head(256)
    model = MODELS[model_name](census_spec, census_tasks)
    # Eagerly: two steps, without paying for a graph trace per model x strategy.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), weighting=strategy, monitor_gradients=True, run_eagerly=True)
    history = model.fit(dataset(df, census_spec, census_tasks, batch_size=128), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert {"income_weight", "marital_weight", "cos_income_marital"} <= set(history)
    assert -1.0 <= history["cos_income_marital"][-1] <= 1.0


def test_strategies_by_name_and_bad_name():
    for name, cls in STRATEGIES.items():
        assert isinstance(tfmtl.weighting.get(name), cls)
    with pytest.raises(tfmtl.InputError, match="unknown strategy 'gradvac'"):
        tfmtl.weighting.get("gradvac")


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import os, sys, json, warnings
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np, tfmtl
    train, _ = tfmtl.datasets.census_income()
    df = train.head(2048).copy()
    df.loc[df.index[::3], "income"] = np.nan   # masked labels must stay exact too
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    spec = tfmtl.FeatureSpec.infer(df, exclude=["income", "marital"])
    results = {}
    # One MirroredStrategy for all runs: separate instances in one process clash in collective keys.
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    # Plain batches for every strategy; for DWA also tfmtl's per-replica pipeline, shuffled, with a short last batch.
    runs = [(name, False) for name in sys.argv[1:]] + [("dwa", True)] * ("dwa" in sys.argv[1:])
    for strategy_name, split in runs:
        weights = []
        for distribute in (tf.distribute.get_strategy(), mirrored):
            with distribute.scope():
                keras.utils.set_random_seed(0)
                model = tfmtl.zoo.MMoE(spec, tasks, num_experts=3, expert_units=[16], tower_units=[8])
                # Several steps per execution: under the two replicas compile falls back to one (keras#19246).
                model.compile(optimizer=keras.optimizers.Adam(1e-2), weighting=strategy_name, steps_per_execution=2)
            if split and distribute is mirrored:
                data = tfmtl.distribute.distributed_dataset(
                    mirrored, df, spec, tasks, global_batch_size=600, shuffle=True, seed=1
                )
            else:
                data = tfmtl.data.dataset(df, spec, tasks, batch_size=600 if split else 512, shuffle=split, seed=1)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.fit(data, epochs=3, verbose=0)  # DWA's weights move from the third epoch
            if any("shuffle" in str(w.message) for w in caught):
                sys.exit(f"fit warned about shuffle= for {type(data).__name__}")
            state = [keras.ops.convert_to_numpy(v) for v in model.weighting.variables]
            # The optimizer's step count too: Adam's bias correction reads it.
            weights.append(model.get_weights() + state + [model.optimizer.iterations.numpy()])
        key = strategy_name + (" (distributed_dataset)" if split else "")
        results[key] = max(float(np.abs(a - b).max()) for a, b in zip(*weights))
    print(json.dumps(results))
    """
)


def test_mirrored_strategy_matches_single_device_for_every_strategy(tmp_path):
    import json

    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    names = sorted(set(STRATEGIES) - {"rlw"})
    # Two processes, half the strategies each: the runs are mostly graph tracing, which a second core speeds up.
    processes = [
        subprocess.Popen([sys.executable, str(script), *half], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=REPO)  # fmt: skip
        for half in (names[::2], names[1::2])
    ]
    differences = {}
    for process in processes:
        stdout, stderr = process.communicate(timeout=1200)
        assert process.returncode == 0, stderr[-3000:]
        differences.update(json.loads(stdout.strip().splitlines()[-1]))
    assert set(differences) == {*names, "dwa (distributed_dataset)"}
    for name, difference in differences.items():
        assert difference < 1e-5, (name, difference)
