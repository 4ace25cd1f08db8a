"""End-to-end tests of the zoo models on a slice of the bundled Census-Income data."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import tfmtl
from tfmtl import InputError, Task
from tfmtl.data import dataset
from tfmtl.weighting import StaticWeighting, UncertaintyWeighting
from tfmtl.zoo import MMoE, MultiTaskModel, SharedBottom

MODELS = {
    "shared-bottom": lambda spec, tasks: SharedBottom(spec, tasks, bottom_units=[32], tower_units=[16]),
    "mmoe": lambda spec, tasks: MMoE(spec, tasks, num_experts=4, expert_units=[32], tower_units=[16]),
}


def predictions(model, df, spec):
    return model.predict(dataset(df, spec, batch_size=4096), verbose=0)


@pytest.mark.parametrize("name", MODELS)
def test_training_beats_a_constant_predictor(name, census, census_spec, census_tasks, fit_beats_constant):
    test = census[1]
    model = MODELS[name](census_spec, census_tasks)
    fit_beats_constant(model)
    preds = predictions(model, test, census_spec)
    assert set(preds) == {"income", "marital"} and preds["income"].shape == (len(test),)
    assert ((preds["income"] >= 0) & (preds["income"] <= 1)).all()


@pytest.mark.parametrize("name", MODELS)
def test_save_and_load_round_trip(name, census, census_spec, census_tasks, tmp_path):
    train, test = census
    model = MODELS[name](census_spec, census_tasks)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(dataset(train.head(1024), census_spec, census_tasks, batch_size=256), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    before, after = predictions(model, test, census_spec), predictions(loaded, test, census_spec)
    for task in before:
        np.testing.assert_array_equal(before[task], after[task])
    # The optimizer state came back too, so training continues where it stopped.
    assert loaded.optimizer.iterations.numpy() == model.optimizer.iterations.numpy() == 4
    loaded.fit(dataset(train.head(512), census_spec, census_tasks, batch_size=256), epochs=1, verbose=0)


def test_raw_and_preprocessed_inputs_give_the_same_predictions(census, census_spec, census_tasks):
    model = MMoE(census_spec, census_tasks, num_experts=3)
    test = census[1].head(500)
    raw = model.predict(dataset(test, census_spec, batch_size=128, preprocess=False), verbose=0)
    prepared = model.predict(dataset(test, census_spec, batch_size=128), verbose=0)
    for task in raw:
        np.testing.assert_allclose(raw[task], prepared[task], rtol=1e-6, atol=1e-7)


def test_config_round_trip_builds_the_same_model(census_spec, census_tasks):
    model = MMoE(census_spec, census_tasks, num_experts=3, expert_units=[8, 4], tower_units=[])
    clone = MMoE.from_config(model.get_config())
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    assert clone.tasks == model.tasks and clone.feature_spec == census_spec


def test_every_parameter_gets_a_gradient(census, census_spec, census_tasks):
    model = MMoE(census_spec, census_tasks, num_experts=4, expert_units=[16], tower_units=[8])
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(dataset(census[0].head(512), census_spec, census_tasks, batch_size=512), epochs=1, verbose=0)
    for weight, old in zip(model.trainable_weights, before):
        assert not np.allclose(weight.numpy(), old), weight.path


def test_gate_weights_are_distributions(census, census_spec, census_tasks):
    model = MMoE(census_spec, census_tasks, num_experts=5)
    x = next(iter(dataset(census[1], census_spec, batch_size=64)))
    weights = keras.ops.convert_to_numpy(model.gate_weights(x))
    assert weights.shape == (64, 2, 5) and (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


def test_missing_labels_are_masked_per_task(census, census_spec, census_tasks):
    train, _ = census
    df = train.head(2000).copy()
    model = SharedBottom(census_spec, census_tasks, bottom_units=[16])
    model.compile()
    masked = df.copy()
    masked.loc[masked.index[::2], "income"] = np.nan
    full_batch = len(df)
    on_masked = model.evaluate(dataset(masked, census_spec, census_tasks, batch_size=full_batch), return_dict=True, verbose=0)
    labelled = df.iloc[1::2]
    on_labelled = model.evaluate(dataset(labelled, census_spec, census_tasks, batch_size=full_batch), return_dict=True, verbose=0)
    on_full = model.evaluate(dataset(df, census_spec, census_tasks, batch_size=full_batch), return_dict=True, verbose=0)
    assert on_masked["income_loss"] == pytest.approx(on_labelled["income_loss"], rel=1e-5)
    assert on_masked["income_auc"] == pytest.approx(on_labelled["income_auc"], rel=1e-5)
    assert on_masked["marital_loss"] == pytest.approx(on_full["marital_loss"], rel=1e-5)


def test_metric_results_are_reported_once_per_execution(census, census_spec, census_tasks):
    df = census[0].head(3000)
    model = SharedBottom(census_spec, census_tasks, bottom_units=[16])
    model.compile(steps_per_execution=4)
    data = dataset(df, census_spec, census_tasks, batch_size=256)
    batch_logs = []
    logger = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batch_logs.append(dict(logs)))
    history = model.fit(data, epochs=1, verbose=0, callbacks=[logger])
    # Steps only update the metrics; each execution's logs still carry every running result.
    assert set(batch_logs[-1]) >= {"loss", "income_auc", "income_logloss", "marital_auc", "marital_loss"}
    assert history.history["income_auc"][0] == pytest.approx(float(model.get_metrics_result()["income_auc"]), rel=1e-6)
    step_logs = model.train_step(next(iter(data)))
    assert "income_auc" not in step_logs and "income_loss" in step_logs
    evaluated = model.evaluate(data, return_dict=True, verbose=0)
    model.reset_metrics()
    for batch in data:
        model.test_step(batch)
    assert evaluated == pytest.approx({k: float(v) for k, v in model.get_metrics_result().items()}, rel=1e-6)


def test_sample_weights_scale_the_loss(census, census_spec):
    df = census[0].head(1000).assign(w=2.0)
    plain = [Task("income", "binary")]
    weighted = [Task("income", "binary", sample_weight="w")]
    model = SharedBottom(census_spec, plain, bottom_units=[16])
    model.compile()
    a = model.evaluate(dataset(df, census_spec, plain, batch_size=1000), return_dict=True, verbose=0)
    b = model.evaluate(dataset(df, census_spec, weighted, batch_size=1000), return_dict=True, verbose=0)
    assert b["income_loss"] == pytest.approx(2 * a["income_loss"], rel=1e-5)


def test_static_weights_match_keras_loss_weights(census, census_spec, census_tasks):
    df = census[0].head(1000)
    model = SharedBottom(census_spec, census_tasks, bottom_units=[16])
    model.compile(weighting=StaticWeighting({"income": 3.0}))
    logs = model.evaluate(dataset(df, census_spec, census_tasks, batch_size=1000), return_dict=True, verbose=0)
    assert logs["loss"] == pytest.approx(3.0 * logs["income_loss"] + logs["marital_loss"], rel=1e-5)
    with pytest.raises(InputError, match=r"unknown task\(s\) \['nope'\]"):
        model.compile(weighting=StaticWeighting({"nope": 1.0}))


def test_uncertainty_weighting_trains_and_reloads(census, census_spec, census_tasks, tmp_path):
    model = SharedBottom(census_spec, census_tasks, bottom_units=[16])
    model.compile(optimizer=keras.optimizers.Adam(0.05), weighting="uncertainty")
    model.fit(dataset(census[0], census_spec, census_tasks, batch_size=500), epochs=1, verbose=0)
    log_variance = model.weighting.log_variance.numpy()
    assert np.abs(log_variance).min() > 1e-3  # learned
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.weighting, UncertaintyWeighting)
    np.testing.assert_array_equal(loaded.weighting.log_variance.numpy(), log_variance)


RANDOM_RESUMES = {
    "random weights": ({"weighting": "rlw"}, {}),
    "pcgrad order": ({"weighting": "pcgrad"}, {}),
    "noisy gate and dropout": ({}, {"gate": {"name": "noisy_top_k", "k": 1, "seed": 3}, "dropout": 0.3}),
}


@pytest.mark.parametrize("case", RANDOM_RESUMES)
def test_training_resumed_from_a_file_draws_the_randomness_it_would_have(case, census, census_tasks, tmp_path):
    # Keras saves no random state; the model saves its layers' and its strategy's, so a resumed run is exact.
    # Three tasks: PCGrad's random order only matters from three on.
    compiled, structure = RANDOM_RESUMES[case]
    df = census[0].head(512)
    tasks = census_tasks + [Task("weeks", "regression", label="weeks_worked")]
    census_spec = tfmtl.FeatureSpec.infer(df, exclude=[task.label for task in tasks])

    def trained(epochs, model=None):
        if model is None:
            keras.utils.set_random_seed(0)
            model = MMoE(census_spec, tasks, num_experts=3, expert_units=[8], tower_units=[4], **structure)
            model.compile(optimizer=keras.optimizers.Adam(0.01), **compiled)
        model.fit(dataset(df, census_spec, tasks, batch_size=128), epochs=epochs, verbose=0)
        return model

    trained(1).save(tmp_path / "m.keras")
    resumed = trained(1, keras.saving.load_model(tmp_path / "m.keras"))
    for a, b in zip(trained(2).get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_mixed_float16_model_reloads_its_loss_scale(census, census_spec, census_tasks, tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = SharedBottom(census_spec, census_tasks, bottom_units=[8], tower_units=[4])
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(dataset(census[0].head(256), census_spec, census_tasks, batch_size=128), epochs=1, verbose=0)
        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    state = {v.path: keras.ops.convert_to_numpy(v) for v in model.optimizer.variables}
    assert {v.path: keras.ops.convert_to_numpy(v) for v in loaded.optimizer.variables}.keys() == state.keys()
    for variable in loaded.optimizer.variables:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), state[variable.path])
    assert state["loss_scale_optimizer/step_counter"] == 2


def test_multiclass_and_regression_tasks(census, census_spec):
    df = census[0].head(1500)
    tasks = [
        Task("education_level", "multiclass", label="education").with_classes_from(df),
        Task("weeks", "regression", label="weeks_worked"),
    ]
    spec = tfmtl.FeatureSpec.infer(df, exclude=["education", "weeks_worked"])
    model = MMoE(spec, tasks, num_experts=2, expert_units=[16])
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(dataset(df, spec, tasks, batch_size=256), epochs=3, verbose=0).history
    assert history["weeks_rmse"][-1] < history["weeks_rmse"][0]
    assert {"education_level_accuracy", "education_level_logloss", "weeks_mae"} <= set(history)
    preds = predictions(model, df, spec)
    assert preds["education_level"].shape == (len(df), len(tasks[0].classes))
    np.testing.assert_allclose(preds["education_level"].sum(1), 1.0, rtol=1e-5)


def test_unseen_categories_and_missing_numbers_at_predict_time(census, census_spec, census_tasks):
    model = MMoE(census_spec, census_tasks, num_experts=2)
    odd = census[1].head(5).copy()
    odd["education"] = "Never seen before"
    odd["age"] = np.nan
    odd["num_emp"] = 99  # an integer category outside the vocabulary
    preds = predictions(model, odd, census_spec)
    assert all(np.isfinite(v).all() for v in preds.values())


def test_bad_construction_and_compile_arguments(census_spec, census_tasks):
    with pytest.raises(InputError, match=r"column 'age' is also a feature"):
        MMoE(census_spec, [Task("old", "binary", label="age")])
    with pytest.raises(InputError, match=r"duplicate task names \['income'\]"):
        MMoE(census_spec, [Task("income", "binary"), Task("income", "regression", label="marital")])
    with pytest.raises(InputError, match="features: expected a tfmtl.FeatureSpec"):
        MMoE({"age": 1}.keys(), census_tasks)
    model = MMoE(census_spec, census_tasks)
    with pytest.raises(InputError, match="loss= is not used"):
        model.compile(loss="mse")
    with pytest.raises(InputError, match="unknown strategy 'magic'"):
        model.compile(weighting="magic")


def test_missing_feature_at_call_time_is_named(census, census_spec, census_tasks):
    model = MMoE(census_spec, census_tasks, num_experts=2)
    x = dict(next(iter(dataset(census[1], census_spec, batch_size=4, preprocess=False))))
    del x["education"]
    with pytest.raises(InputError, match=r"missing feature\(s\) \['education'\]"):
        model(x)


def test_base_class_needs_a_body(census_spec, census_tasks):
    class NoBody(MultiTaskModel):
        pass

    with pytest.raises(NotImplementedError, match="build_body"):
        NoBody(census_spec, census_tasks).build()


def test_xla_compiles_steps_on_preprocessed_inputs_and_falls_back_for_raw(census, census_spec, census_tasks):
    train, test = census[0].head(1024), census[1].head(512)
    model = MMoE(census_spec, census_tasks, num_experts=3, expert_units=[8], tower_units=[4])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    model.fit(dataset(train, census_spec, census_tasks, batch_size=256), epochs=1, verbose=0)
    assert model.jit_compile  # Keras alone refuses XLA for a model holding preprocessing layers
    compiled = predictions(model, test, census_spec)
    raw = model.predict(dataset(test, census_spec, batch_size=4096, preprocess=False), verbose=0)
    assert not model.jit_compile  # string lookups stay out of XLA
    for task in raw:
        np.testing.assert_allclose(compiled[task], raw[task], rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="jit_compile"):
        model.compile(jit_compile="auto")
