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
from tfmtl.weighting import STRATEGIES, AlignedMTL, CAGrad, MGDA, PCGrad, StaticWeighting, UncertaintyWeighting
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


def test_cagrad_with_c_zero_is_the_average_gradient():
    g = [[1.0, -2.0, 0.5], [-3.0, 1.0, 2.0]]
    combined, _ = combine(CAGrad(c=0.0), g)
    np.testing.assert_allclose(combined, np.mean(g, axis=0), atol=1e-5)
    # With c > 0 the worst-off task does better than under the average.
    combined, _ = combine(CAGrad(c=0.5), g)
    g = np.array(g)
    assert min(g @ combined) > min(g @ g.mean(0)) - 1e-6


def test_aligned_mtl_on_orthogonal_gradients():
    combined, weights = combine(AlignedMTL(), [[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # Each gradient rescaled to the smallest norm, then summed.
    np.testing.assert_allclose(combined, [1.0, 1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(weights, [1 / 3, 1.0], atol=1e-5)


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
    import os, sys, json
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
    for strategy_name in sys.argv[1:]:
        weights = []
        for distribute in (tf.distribute.get_strategy(), mirrored):
            with distribute.scope():
                keras.utils.set_random_seed(0)
                model = tfmtl.zoo.MMoE(spec, tasks, num_experts=3, expert_units=[16], tower_units=[8])
                model.compile(optimizer=keras.optimizers.Adam(1e-2), weighting=strategy_name)
            data = tfmtl.data.dataset(df, spec, tasks, batch_size=512)
            model.fit(data, epochs=2, verbose=0)
            weights.append([w for w in model.get_weights()])
        results[strategy_name] = max(float(np.abs(a - b).max()) for a, b in zip(*weights))
    print(json.dumps(results))
    """
)


def test_mirrored_strategy_matches_single_device_for_every_strategy(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), *sorted(set(STRATEGIES) - {"rlw"})],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    differences = json.loads(result.stdout.strip().splitlines()[-1])
    for name, difference in differences.items():
        assert difference < 1e-5, (name, difference)
