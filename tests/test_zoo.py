"""The zoo's models end to end on a slice of Census-Income: training, saving, gates, gradients, CLI."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmtl
from tfmtl.cli.main import main
from tfmtl.cli.recipe import load_recipe, resolve
from tfmtl.data import dataset
from tfmtl import InputError
from tfmtl.zoo import MODELS, PLE, STEM, CrossStitch, MHAFusion, MMoE, OMoE, PEPNet, SharedBottom

VARIANTS = {
    "omoe": lambda s, t: OMoE(s, t, num_experts=4, expert_units=[16], tower_units=[8]),
    "mmoe-noisy-top-k": lambda s, t: MMoE(
        s, t, num_experts=4, expert_units=[16], gate={"name": "noisy_top_k", "k": 2}
    ),
    "mmoe-dselect-k": lambda s, t: MMoE(s, t, num_experts=5, expert_units=[16], gate="dselect_k"),
    "ple": lambda s, t: PLE(s, t, num_levels=2, num_shared_experts=2, num_task_experts=1, expert_units=[16]),
    "cross-stitch": lambda s, t: CrossStitch(s, t, column_units=[16, 8], tower_units=[8]),
    "mha-fusion": lambda s, t: MHAFusion(
        s, t, num_experts=4, expert_units=[16], attend_fields=True, field_attention_layers=1, tower_units=[8]
    ),
    "stem": lambda s, t: STEM(s, t, num_shared_experts=2, num_task_experts=2, expert_units=[16], tower_units=[8]),
    "pepnet": lambda s, t: PEPNet(
        s, t, domain_features=["class_worker"], personal_features=["age", "sex"], tower_units=[16, 8], gate_units=8
    ),
    "shared-bottom-field-attention": lambda s, t: SharedBottom(
        s, t, bottom_units=[32], field_attention_layers=1, field_attention_units=8, tower_units=[8]
    ),
}
MOE_STYLE = ["omoe", "mmoe-noisy-top-k", "mmoe-dselect-k", "ple", "mha-fusion", "stem"]
# Trained in graph mode and reloaded; the other variants train through the CLI tests or share their layers.
TRAINED = ["omoe", "ple", "cross-stitch", "mha-fusion", "stem", "pepnet"]
# Strategies run eagerly on one small batch per model (gradient-level ones take one backward pass per task).
WEIGHTED = ["omoe", "ple", "cross-stitch", "mha-fusion", "stem", "pepnet"]


def predictions(model, df, spec):
    return model.predict(dataset(df, spec, batch_size=4096), verbose=0)


def batch(df, spec, tasks, rows):
    return next(iter(dataset(df.head(rows), spec, tasks, batch_size=rows)))


def test_every_model_has_a_cli_name_and_a_census_recipe():
    names = {"shared-bottom": SharedBottom, "mmoe": MMoE, "omoe": OMoE, "ple": PLE, "cross-stitch": CrossStitch,
             "stem": STEM, "pepnet": PEPNet}
    assert {**names, "mha-fusion": MHAFusion}.items() <= MODELS.items()
    for name in [*names, "mha-fusion"]:
        assert resolve(None, {"model": name, "dataset": "census-income"})["model_args"], name


@pytest.mark.parametrize("name", TRAINED)
def test_trains_beats_a_constant_and_reloads_identically(name, census, census_spec, census_tasks, fit_beats_constant,
                                                          tmp_path):
    test = census[1]
    model = VARIANTS[name](census_spec, census_tasks)
    fit_beats_constant(model)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")  # no custom_objects
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    clone = type(model).from_config(model.get_config())
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    before, after = predictions(model, test, census_spec), predictions(loaded, test, census_spec)
    for task in before:
        np.testing.assert_array_equal(before[task], after[task])


@pytest.mark.parametrize("name", MOE_STYLE)
def test_gate_weights_are_distributions(name, census, census_spec, census_tasks):
    model = VARIANTS[name](census_spec, census_tasks)
    x = next(iter(dataset(census[1], census_spec, batch_size=64)))
    weights = keras.ops.convert_to_numpy(model.gate_weights(x))
    assert weights.ndim == 3 and weights.shape[:2] == (64, 2)
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_trains_under_bf16_mixed_precision(name, census, census_spec, census_tasks):
    # Gates, masks and auxiliary losses mix constants and float32 encoder outputs with bf16 activations.
    with tfmtl.distribute.dtype_policy("bf16"):
        keras.utils.set_random_seed(0)
        model = VARIANTS[name](census_spec, census_tasks)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
    x, y = batch(census[0], census_spec, census_tasks, 64)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert model.dtype_policy.name == "mixed_bfloat16" and np.isfinite(logs["loss"]), logs
    if name in MOE_STYLE:
        weights = model.gate_weights(x)
        assert keras.backend.standardize_dtype(weights.dtype) == "float32"  # the gates compute in float32
        # Keras' MultiHeadAttention takes its softmax in bf16, which keeps 8 bits of mantissa.
        tolerance = 1e-2 if name == "mha-fusion" else 1e-5
        np.testing.assert_allclose(keras.ops.convert_to_numpy(weights).sum(-1), 1.0, rtol=tolerance)


def test_a_seeded_gate_draws_other_noise_in_every_gate_of_ple(census_spec, census_tasks):
    model = PLE(census_spec, census_tasks, num_levels=2, num_shared_experts=2, num_task_experts=1, expert_units=[8],
                gate={"name": "noisy_top_k", "k": 1, "seed": 7})  # fmt: skip
    gates = [model.levels[0].task_gates, model.levels[0].shared_gate, model.levels[1].task_gates]
    assert [gate.seed for gate in gates] == [7, 8, 9]
    again = PLE.from_config(model.get_config())
    assert [again.levels[0].task_gates.seed, again.levels[1].task_gates.seed] == [7, 9]


def test_gate_weights_say_which_experts_a_task_reads(census, census_spec, census_tasks):
    x = next(iter(dataset(census[1], census_spec, batch_size=32)))
    ple = PLE(census_spec, census_tasks, num_levels=2, num_shared_experts=3, num_task_experts=2)
    first, last = (keras.ops.convert_to_numpy(ple.gate_weights(x, level=i)) for i in (0, 1))
    assert first.shape == last.shape == (32, 2, 3 + 2 * 2)
    assert (last[:, 0, 5:] == 0).all() and (last[:, 1, 3:5] == 0).all()
    sparse = MMoE(census_spec, census_tasks, num_experts=6, gate={"name": "noisy_top_k", "k": 2})
    sparse.mixture.gate.logits.bias.assign(np.arange(12, dtype="float32").reshape(2, 6))
    assert ((keras.ops.convert_to_numpy(sparse.gate_weights(x)) > 0).sum(-1) == 2).all()
    one_gate = keras.ops.convert_to_numpy(OMoE(census_spec, census_tasks, num_experts=3).gate_weights(x))
    np.testing.assert_array_equal(one_gate[:, 0], one_gate[:, 1])
    fusion = MHAFusion(census_spec, census_tasks, num_experts=4, attend_fields=True)
    assert fusion.gate_weights(x).shape == (32, 2, 4 + len(census_spec))


def test_stem_mixes_every_expert_but_trains_only_shared_and_own(census, census_spec, census_tasks):
    model = STEM(census_spec, census_tasks, num_shared_experts=1, num_task_experts=2, expert_units=[8])
    x, y = batch(census[0], census_spec, census_tasks, 256)
    weights = keras.ops.convert_to_numpy(model.gate_weights(x))
    assert weights.shape == (256, 2, 1 + 2 * 2) and (weights > 0).all()  # forward: all experts
    with tf.GradientTape() as tape:
        income_loss = model._task_losses(model._labelled(y, None), model.task_logits(x, training=True))[0]
    kernel = model.task_experts.dense_layers[0].kernel  # members: income's 2 experts, then marital's
    reached = np.abs(dense(tape.gradient(income_loss, kernel))).sum(axis=(1, 2))
    assert (reached[:2] > 0).all() and (reached[2:] == 0).all()
    raw = dataset(census[1].head(64), census_spec, batch_size=64, preprocess=False)
    on_raw, on_ids = model.predict(raw, verbose=0), predictions(model, census[1].head(64), census_spec)
    np.testing.assert_allclose(on_raw["income"], on_ids["income"], rtol=1e-6)
    with pytest.raises(InputError, match="num_task_experts: expected >= 1, got 0"):
        STEM(census_spec, census_tasks, num_task_experts=0)
    with pytest.raises(InputError, match="num_shared_experts: expected >= 0, got -1"):
        STEM(census_spec, census_tasks, num_shared_experts=-1)


def test_pepnet_gates_read_priors_but_pass_no_gradient_to_what_they_scale(census, census_spec, census_tasks):
    x, _ = batch(census[0], census_spec, census_tasks, 128)

    def gate_gradients(model):
        with tf.GradientTape() as tape:
            _, prior = model.task_representations(x, training=True)
            scales = [model.embedding_gate(model._prior(model.encoder(x), model._domain_columns, model.encoder(x)))]
            scales += [gate(prior) for gate in model.tower_gates]
            total = sum(keras.ops.sum(s) for s in scales)
        return scales, tape.gradient(total, model.encoder.trainable_variables)

    plain = PEPNet(census_spec, census_tasks, tower_units=[8], gate_units=4)
    scales, to_embeddings = gate_gradients(plain)
    # Without prior features the gates read the embeddings only through a stop-gradient.
    assert all(g is None for g in to_embeddings)
    assert [s.shape[-1] for s in scales] == [plain.encoder.output_dim, 2 * plain.encoder.output_dim, 2 * 8]
    assert all(0 < keras.ops.convert_to_numpy(s).min() and keras.ops.convert_to_numpy(s).max() < 2 for s in scales)
    personal = PEPNet(census_spec, census_tasks, personal_features=["sex"], tower_units=[8], gate_units=4)
    _, to_embeddings = gate_gradients(personal)
    assert any(g is not None and np.abs(dense(g)).sum() > 0 for g in to_embeddings)
    with pytest.raises(InputError, match=r"features \['nope'\]: not in the FeatureSpec"):
        PEPNet(census_spec, census_tasks, personal_features=["nope"])
    with pytest.raises(InputError, match="tower_units: PEPNet personalises tower layers"):
        PEPNet(census_spec, census_tasks, tower_units=[])


def dense(gradient):
    return np.zeros(()) if gradient is None else tf.convert_to_tensor(gradient).numpy()


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_every_parameter_and_task_specific_ones_only_their_task(
    name, census, census_spec, census_tasks
):
    model = VARIANTS[name](census_spec, census_tasks)
    x, y = batch(census[0], census_spec, census_tasks, 512)
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        logits = model.task_logits(x, training=True)
        task_losses = model._task_losses(model._labelled(y, None), logits)
        per_task = [task_losses[t] for t in range(2)]
        total = keras.ops.sum(task_losses) + sum(model.losses)
    for variable, gradient in zip(variables, tape.gradient(total, variables)):
        assert np.abs(dense(gradient)).sum() > 0, variable.path
    # Which task's loss reaches which parameter, element by element.
    reached = [[np.abs(dense(g)) > 0 for g in tape.gradient(per_task[t], variables)] for t in range(2)]
    specific = {id(v) for layer in model.task_specific_layers() for v in layer.trainable_variables}
    for i, variable in enumerate(variables):
        by_task = [np.broadcast_to(reached[t][i], variable.shape) for t in range(2)]
        if id(variable) in specific:
            assert not (by_task[0] & by_task[1]).any(), f"{variable.path} is task-specific but both tasks reach it"
        else:
            assert by_task[0].any() and by_task[1].any(), f"{variable.path} is shared but a task does not reach it"


@pytest.mark.parametrize("name", ["mmoe-noisy-top-k", "mmoe-dselect-k"])
def test_auxiliary_gate_losses_only_while_training(name, census, census_spec, census_tasks):
    model = VARIANTS[name](census_spec, census_tasks)
    x, _ = batch(census[0], census_spec, census_tasks, 256)
    model.task_logits(x, training=True)
    assert model.losses and all(float(loss) > 0 for loss in model.losses)
    model.task_logits(x, training=False)
    assert model.losses == []


@pytest.mark.parametrize("name", WEIGHTED)
def test_works_with_every_weighting_strategy(name, census, census_spec, census_tasks):
    model = VARIANTS[name](census_spec, census_tasks)
    data = batch(census[0], census_spec, census_tasks, 64)
    for strategy in tfmtl.weighting.STRATEGIES:
        model.compile(optimizer=keras.optimizers.SGD(0.01), weighting=strategy, run_eagerly=True)
        before = [v.numpy().copy() for v in model.trainable_variables]
        logs = model.train_on_batch(*data, return_dict=True)
        assert np.isfinite(logs["loss"]), (strategy, logs)
        moved = [not np.array_equal(v.numpy(), old) for v, old in zip(model.trainable_variables, before)]
        assert sum(moved) > len(moved) // 2, strategy


@pytest.fixture(scope="module")
def cli_files(census, tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo_cli")
    census[0].head(1500).to_csv(folder / "train.csv", index=False)
    census[1].head(500).to_csv(folder / "test.csv", index=False)
    return folder


@pytest.mark.parametrize("model", ["omoe", "ple", "cross-stitch", "mha-fusion", "stem", "pepnet"])
def test_each_model_through_the_cli(model, cli_files, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["train", "--model", model, "--train-data", str(cli_files / "train.csv"),
         "--test-data", str(cli_files / "test.csv"), "--task", "income:binary", "--task", "marital:binary",
         "--epochs", "1", "--batch-size", "256", "--out", str(out), "--verbose", "0"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["tasks"]["marital"]["auc"] > 0.8
    assert type(keras.saving.load_model(out / "model.keras")) is MODELS[model]
    recipe = load_recipe(tfmtl.cli.recipe.shipped_recipe(model, "census-income"))
    assert resolve(None, {"model": model, "dataset": "census-income"}) == resolve(recipe, {})


def test_a_model_with_a_table_per_feature_trains_from_the_pipeline_and_the_cli(census, census_spec, census_tasks,
                                                                              cli_files, tmp_path, capsys):
    model = MMoE(census_spec, census_tasks, num_experts=2, expert_units=[8], fused_embeddings=False)
    model.compile()
    test = census[1].head(64)
    with pytest.raises(InputError, match="preprocessed for fused_embeddings=True, but this model has fused_embeddings="
                                         "False: pass fused=False to tfmtl.data.dataset"):  # fmt: skip
        model.predict(dataset(test, census_spec, batch_size=64), verbose=0)
    preprocessed = model.predict(dataset(test, census_spec, batch_size=64, fused=False), verbose=0)
    raw = model.predict(dataset(test, census_spec, batch_size=64, preprocess=False), verbose=0)
    np.testing.assert_allclose(preprocessed["income"], raw["income"], rtol=1e-6)
    code = main(
        ["train", "--model", "mmoe", "--train-data", str(cli_files / "train.csv"), "--task", "income:binary",
         "--drop", "marital", "--model-arg", "fused_embeddings=false", "--model-arg", "num_experts=2", "--epochs", "1",
         "--out", str(tmp_path), "--verbose", "0"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err


def test_a_gate_from_the_command_line(cli_files, tmp_path, capsys):
    code = main(
        ["train", "--model", "mmoe", "--train-data", str(cli_files / "train.csv"), "--task", "income:binary",
         "--drop", "marital", "--epochs", "1", "--model-arg", 'gate={"name": "noisy_top_k", "k": 2}',
         "--out", str(tmp_path), "--verbose", "0"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded) is MMoE and loaded.gate == {"name": "noisy_top_k", "k": 2}
    code = main(
        ["train", "--model", "ple", "--train-data", str(cli_files / "train.csv"), "--task", "income:binary",
         "--drop", "marital", "--model-arg", "gate=sparse", "--out", str(tmp_path), "--verbose", "0"]
    )  # fmt: skip
    assert code == 2
    assert "gate: unknown gate 'sparse'" in capsys.readouterr().err


def test_synthetic_correlated_data():
    train, test = tfmtl.datasets.synthetic_correlated(0.5, num_train=3000, num_test=500, dim=20, seed=3)
    assert train.shape == (3000, 22) and test.shape == (500, 22)
    assert list(train.columns[-2:]) == ["y1", "y2"]
    again, _ = tfmtl.datasets.synthetic_correlated(0.5, num_train=3000, num_test=500, dim=20, seed=3)
    assert train.equals(again)
    correlations = []
    for p in (0.0, 0.5, 0.9, 1.0):
        df, _ = tfmtl.datasets.synthetic_correlated(p, num_train=3000, num_test=10, dim=20, seed=3)
        correlations.append(np.corrcoef(df["y1"], df["y2"])[0, 1])
    assert correlations == sorted(correlations) and abs(correlations[0]) < 0.1 and correlations[-1] > 0.98
    with pytest.raises(tfmtl.InputError, match=r"correlation: expected a value in \[-1, 1\], got 1.5"):
        tfmtl.datasets.synthetic_correlated(1.5)


def test_ple_with_dselect_gates_learns_synthetic_regression_tasks():
    train, test = tfmtl.datasets.synthetic_correlated(0.9, num_train=3000, num_test=1000, dim=20, seed=0)
    tasks = [tfmtl.Task("y1", "regression"), tfmtl.Task("y2", "regression")]
    spec = tfmtl.FeatureSpec.infer(train, exclude=["y1", "y2"])
    model = PLE(spec, tasks, num_levels=2, expert_units=[16], tower_units=[8], gate="dselect_k")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(dataset(train, spec, tasks, batch_size=128, shuffle=True), epochs=5, verbose=0)
    scores = model.evaluate(dataset(test, spec, tasks, batch_size=1000), return_dict=True, verbose=0)
    for task in ("y1", "y2"):
        assert scores[f"{task}_loss"] < 0.5 * test[task].var(), scores
