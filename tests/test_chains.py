"""Chained tasks (ESMM, AITM and any body): tasks, maths, layers, models, data, weighting, CLI."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from test_layers import round_trip

import tfmtl
from tfmtl import InputError, Task
from tfmtl.cli.main import _task_flag, main
from tfmtl.cli.recipe import load_recipe, resolve, shipped_recipe
from tfmtl.data import dataset
from tfmtl.datasets import funnel_columns, synthetic_funnel
from tfmtl.layers import AdaptiveInformationTransfer, ExpectationCalibrator, TaskTowers
from tfmtl.tasks import doubly_robust_risk, inverse_propensity_risk, task_chains
from tfmtl.tasks.chain import conditional_probability, entire_space_logit
from tfmtl.zoo import AITM, ESCM2, ESMM, MODELS, MMoE

STAGES = ("click", "cart", "purchase")
CHAIN = [Task("click", "binary"), Task("cart", "binary", parent="click"),
         Task("purchase", "binary", parent="cart", conditional_name="cvr")]  # fmt: skip
ESMM_TASKS = [Task("ctr", "binary", label="click"),
              Task("ctcvr", "binary", label="conversion", parent="ctr", conditional_name="cvr")]  # fmt: skip
BUILDERS = {
    "esmm": lambda spec, tasks: ESMM(spec, tasks, tower_units=[16, 8]),
    "aitm": lambda spec, tasks: AITM(spec, tasks, tower_units=[16, 8]),
    "escm2-ips": lambda spec, tasks: ESCM2(spec, tasks, tower_units=[16, 8]),
    "escm2-dr": lambda spec, tasks: ESCM2(spec, tasks, tower_units=[16, 8], counterfactual="dr"),
    "mmoe": lambda spec, tasks: MMoE(spec, tasks, num_experts=3, expert_units=[16], tower_units=[8]),
}


@pytest.fixture(scope="module")
def funnel():
    """A small two-step funnel whose signal a few epochs can learn."""
    train, test = synthetic_funnel(num_train=6000, num_test=2000, rates=[0.2, 0.3], num_users=40, num_items=20, seed=1)
    return train, test, tfmtl.FeatureSpec.infer(train, exclude=funnel_columns())


@pytest.fixture(scope="module")
def long_funnel():
    train, test = synthetic_funnel(num_train=1500, num_test=300, stages=STAGES, rates=[0.3, 0.4, 0.4],
                                   num_users=30, num_items=20, seed=2)  # fmt: skip
    return train, test, tfmtl.FeatureSpec.infer(train, exclude=funnel_columns(STAGES))


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ----- tasks ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "tasks, message",
    [
        ([Task("a", "binary"), Task("b", "binary", parent="z")], r"task 'b': parent 'z' is not one of the tasks"),
        ([Task("a", "regression"), Task("b", "binary", parent="a")], r"task 'b': parent 'a' must be a binary task"),
        ([Task("a", "binary", parent="b"), Task("b", "binary", parent="a")], r"the parents form a cycle a -> b -> a"),
        ([Task("a", "binary"), Task("b", "binary", parent="a", conditional_name="a")], r"output name\(s\) \['a'\] used twice"),
        ([Task("a", "binary"), Task("b", "binary", parent="a"), Task("b_conditional", "binary")], r"\['b_conditional'\]"),
    ],
)
def test_bad_chains_are_one_line_errors(tasks, message):
    with pytest.raises(InputError, match=message) as error:
        tfmtl.tasks.check_tasks(tasks)
    assert "\n" not in str(error.value)


def test_bad_chained_task_arguments():
    with pytest.raises(InputError, match=r"task 'b': only binary tasks can have a parent, this one is regression"):
        Task("b", "regression", parent="a")
    with pytest.raises(InputError, match=r"task 'b': parent must be the name of another task, got 'b'"):
        Task("b", "binary", parent="b")
    with pytest.raises(InputError, match=r"task 'b': conditional_name needs a parent task"):
        Task("b", "binary", conditional_name="x")


def test_chained_task_config_round_trip_and_chains():
    for task in CHAIN:
        assert Task.from_config(task.get_config()) == task
    old = {"name": "ctr", "kind": "binary", "label": "ctr", "loss_weight": 1.0, "sample_weight": None, "classes": None}
    assert Task.from_config(old).parent is None  # configs saved before chains still load
    assert [t.conditional_output for t in CHAIN] == [None, "cart_conditional", "cvr"]
    assert task_chains(CHAIN) == [[0], [0, 1], [0, 1, 2]]
    assert task_chains(CHAIN[::-1]) == [[2, 1, 0], [2, 1], [2]]


# ----- maths ---------------------------------------------------------------------
def test_entire_space_logit_is_the_product_and_stays_finite():
    z = np.random.default_rng(0).normal(scale=4.0, size=(3, 64))
    np.testing.assert_allclose(sigmoid(numpy(entire_space_logit(list(z)))), np.prod(sigmoid(z), axis=0), rtol=1e-6)
    # Saturated steps: the product's log loss and its gradients stay finite for either label.
    extreme = [tf.constant([90.0, 90.0, -90.0, 30.0]), tf.constant([90.0, -90.0, -90.0, 95.0])]
    with tf.GradientTape() as tape:
        tape.watch(extreme)
        logit = entire_space_logit(extreme)
        loss = keras.ops.binary_crossentropy(tf.constant([0.0, 1.0, 1.0, 0.0]), logit, from_logits=True)
        total = tf.reduce_sum(loss)
    gradients = tape.gradient(total, extreme)
    assert np.isfinite(numpy(loss)).all() and all(np.isfinite(numpy(g)).all() for g in gradients)
    np.testing.assert_allclose(numpy(loss)[1], 90.0, rtol=1e-4)  # -log sigmoid(90) sigmoid(-90)
    np.testing.assert_allclose(numpy(conditional_probability(np.array([-3.0, 2.0]), np.array([0.0, 0.0]))),
                               [2 * sigmoid(-3.0), 1.0], rtol=1e-6)  # fmt: skip


# ----- layers --------------------------------------------------------------------
def test_task_towers_split_into_hidden_and_output():
    towers = TaskTowers(3, [8, 4])
    x = tf.random.normal((5, 6))
    hidden = towers.hidden_representations(x)
    assert hidden.shape == (5, 3, 4)
    np.testing.assert_allclose(numpy(towers.output_logits(hidden)), numpy(towers(x)), rtol=1e-6)
    assert TaskTowers(2).hidden_representations(x).shape == (5, 2, 6)


def test_information_transfer_flows_down_a_chain():
    transfer = AdaptiveInformationTransfer(num_tasks=4, links=[(0, 1), (1, 2)])
    x = tf.random.normal((8, 4, 6), seed=1)
    out = round_trip(transfer, x)
    assert out.shape == (8, 4, 6)
    np.testing.assert_array_equal(numpy(out)[:, [0, 3]], numpy(x)[:, [0, 3]])  # no link leads to them
    _, weights = transfer(x, return_attention=True)
    assert weights.shape == (8, 2, 2)
    np.testing.assert_allclose(numpy(weights).sum(-1), 1.0, rtol=1e-5)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out = transfer(x, training=True)
        loss = tf.reduce_sum(tf.sin(out[:, 2]))
    # The grandchild reads the root, and every weight is used.
    assert np.abs(numpy(tape.gradient(loss, x))[:, 0]).sum() > 0
    for variable, gradient in zip(transfer.trainable_variables, tape.gradient(loss, transfer.trainable_variables)):
        assert np.abs(numpy(gradient)).sum() > 0, variable.path
    for links, message in (([(0, 1), (2, 1)], "two parents"), ([(0, 1), (1, 0)], "two parents|cycle"),
                           ([(0, 5)], r"in \[0, 4\)"), ([], "at least one")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            AdaptiveInformationTransfer(num_tasks=4, links=links)


def test_information_transfer_dropout_gives_a_child_its_parents_own_output():
    """With dropout, the grandchild's link reads the same parent output that the parent's prediction uses."""
    keras.utils.set_random_seed(0)
    transfer = AdaptiveInformationTransfer(num_tasks=3, links=[(0, 1), (1, 2)], dropout=0.5)
    x = tf.random.normal((16, 3, 6), seed=2)
    transfer.build(x.shape)
    parents_read = []
    transfer_call = transfer.transfer.call
    transfer.transfer.call = lambda inputs, *a, **k: parents_read.append(inputs) or transfer_call(inputs, *a, **k)
    out = numpy(transfer(x, training=True))
    assert len(parents_read) == 2  # one pass per depth; the last one feeds link (1, 2)
    np.testing.assert_array_equal(numpy(parents_read[-1])[:, 1], out[:, 1])
    assert not np.allclose(out, numpy(transfer(x, training=False)))  # dropout did act

def test_expectation_calibrator_penalises_only_broken_order_while_training():
    calibrator = ExpectationCalibrator(links=[(0, 1), (1, 2)], weight=0.5)
    logits = np.array([[0.0, 1.0, -1.0], [2.0, -2.0, -3.0]], "float32")
    assert numpy(round_trip(calibrator, logits)).tolist() == logits.tolist()
    assert calibrator.losses == []
    calibrator(logits, training=True)
    p = sigmoid(logits)
    expected = 0.5 * np.maximum(p[:, [1, 2]] - p[:, [0, 1]], 0).mean(0).sum()
    np.testing.assert_allclose(float(calibrator.losses[0]), expected, rtol=1e-5)


# ----- models --------------------------------------------------------------------
@pytest.mark.parametrize("name", BUILDERS)
def test_chained_outputs_of_any_length(name, long_funnel):
    _, test, spec = long_funnel
    model = BUILDERS[name](spec, CHAIN)
    out = model.predict(dataset(test, spec, batch_size=512), verbose=0)
    assert sorted(out) == ["cart", "cart_conditional", "click", "cvr", "purchase"]
    assert all(v.shape == (len(test),) for v in out.values())
    if model.chain_product:
        np.testing.assert_allclose(out["cart"], out["click"] * out["cart_conditional"], rtol=1e-5)
        np.testing.assert_allclose(out["purchase"], out["cart"] * out["cvr"], rtol=1e-5)
        assert (out["purchase"] <= out["cart"]).all() and (out["cart"] <= out["click"]).all()
    else:
        np.testing.assert_allclose(out["cvr"], np.minimum(out["purchase"] / out["cart"], 1.0), rtol=1e-5)


def test_chain_products_never_exceed_the_parent_even_where_steps_saturate(funnel):
    """pCTCVR <= pCTR exactly, also where pCVR rounds to 1 (the sigmoid of the product's logit could not promise it)."""
    _, test, spec = funnel
    model = ESMM(spec, ESMM_TASKS, tower_units=[8])
    x = next(iter(dataset(test.head(801), spec, batch_size=801)))
    ctr = np.linspace(-8, 8, 801, dtype="float32")
    for cvr in (2.0, 12.0, 17.0, 30.0):
        model._step_logits = lambda inputs, training, for_loss=False: [tf.constant(ctr), tf.fill([801], cvr)]
        out = {name: numpy(value) for name, value in model(x).items()}
        assert (out["ctcvr"] <= out["ctr"]).all(), cvr
        np.testing.assert_allclose(out["ctcvr"], sigmoid(ctr) * sigmoid(cvr), rtol=1e-6)


def test_escm2_risk_ignores_the_parents_sample_weights(funnel):
    """A task's sample weights weigh its own loss: the parent's change the child's counterfactual risk not at all."""
    train, _, spec = funnel
    rows = train.head(512).assign(w=1.0)
    tasks = [Task("ctr", "binary", label="click", sample_weight="w"), ESMM_TASKS[1]]
    heavy = rows.assign(w=np.where(np.arange(len(rows)) % 2 == 0, 0.0, 3.0))
    for counterfactual in ("ips", "dr"):
        model = ESCM2(spec, tasks, tower_units=[8], counterfactual=counterfactual, counterfactual_weight=1.0)
        shares = []
        for df in (rows, heavy):
            x, y, weights = next(iter(dataset(df, spec, tasks, batch_size=len(df))))
            steps = model._step_logits(x, training=False, for_loss=True)
            labelled = model._labelled(y, weights)
            shares.append(numpy(model._task_losses(labelled, model._entire_space_logits(steps), steps)))
        assert shares[1][1] == pytest.approx(shares[0][1], rel=1e-6), counterfactual
        assert shares[1][0] != pytest.approx(shares[0][0], rel=1e-3)  # the weights do weigh the parent's own loss

def training_losses(model, x, y):
    """The task losses `train_step` differentiates, counterfactual risks included."""
    steps = model._step_logits(x, training=True, for_loss=True)
    return model._task_losses(model._labelled(y, None), model._entire_space_logits(steps), steps)


@pytest.mark.parametrize("name", BUILDERS)
def test_trains_under_bf16_mixed_precision(name, funnel):
    # The calibrator's and the counterfactual risks' losses come from bf16 activations.
    train, _, spec = funnel
    with tfmtl.distribute.dtype_policy("bf16"):
        keras.utils.set_random_seed(0)
        model = BUILDERS[name](spec, ESMM_TASKS)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
    x, y = next(iter(dataset(train.head(128), spec, ESMM_TASKS, batch_size=128)))
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]), logs
    predictions = model.predict(x, verbose=0)
    assert sorted(predictions) == ["ctcvr", "ctr", "cvr"]


@pytest.mark.parametrize("name", ["esmm", "aitm", "escm2-dr"])
def test_trains_beats_a_constant_and_reloads_identically(name, funnel, tmp_path):
    train, test, spec = funnel
    model = BUILDERS[name](spec, ESMM_TASKS)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(dataset(train, spec, ESMM_TASKS, batch_size=256, shuffle=True, seed=0), epochs=3, verbose=0)
    scores = model.evaluate(dataset(test, spec, ESMM_TASKS, batch_size=4096), return_dict=True, verbose=0)
    for task, label in (("ctr", "click"), ("ctcvr", "conversion")):
        prior = train[label].mean()
        constant = -np.mean(test[label] * np.log(prior) + (1 - test[label]) * np.log(1 - prior))
        assert scores[f"{task}_logloss"] < 0.97 * constant, (task, scores)
        assert scores[f"{task}_auc"] > 0.65, (task, scores)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")  # no custom_objects
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    assert loaded.tasks == ESMM_TASKS
    before = model.predict(dataset(test, spec, batch_size=4096), verbose=0)
    after = loaded.predict(dataset(test, spec, batch_size=4096), verbose=0)
    assert sorted(before) == ["ctcvr", "ctr", "cvr"]
    for output in before:
        np.testing.assert_array_equal(before[output], after[output])
    if name != "aitm":
        assert (before["ctcvr"] <= before["ctr"]).all()
        # Trained on the entire space, pCVR ranks the would-be conversions of every impression.
        truth = test["conversion_if_click"].to_numpy()
        assert np.mean(before["cvr"][truth == 1]) > np.mean(before["cvr"][truth == 0])


@pytest.mark.parametrize("name", BUILDERS)
def test_gradients_reach_every_parameter(name, long_funnel):
    train, _, spec = long_funnel
    model = BUILDERS[name](spec, CHAIN)
    x, y = next(iter(dataset(train.head(512), spec, CHAIN, batch_size=512)))
    with tf.GradientTape() as tape:
        task_losses = training_losses(model, x, y)
        total = keras.ops.sum(task_losses) + sum(model.losses)
    assert task_losses.shape == (3,)
    for variable, gradient in zip(model.trainable_variables, tape.gradient(total, model.trainable_variables)):
        assert np.abs(numpy(tf.convert_to_tensor(gradient))).sum() > 0, variable.path
    # A child's loss reaches its parent's tower: with chains no parameter is one task's alone.
    assert len(model.shared_variables) == len(model.trainable_variables)


def test_missing_chained_labels_are_masked(funnel):
    train, _, spec = funnel
    df = train.head(256).copy()
    model = BUILDERS["esmm"](spec, ESMM_TASKS)
    x, y = next(iter(dataset(df, spec, ESMM_TASKS, batch_size=256)))
    logits = model.task_logits(x)
    masked = df.copy()
    masked.loc[masked.index[::2], "conversion"] = np.nan
    _, y_masked = next(iter(dataset(masked, spec, ESMM_TASKS, batch_size=256)))
    full = numpy(model._task_losses(model._labelled(y, None), logits))
    half = numpy(model._task_losses(model._labelled(y_masked, None), logits))
    per_example = numpy(keras.ops.binary_crossentropy(y["ctcvr"], logits[1], from_logits=True))
    assert half[0] == pytest.approx(full[0])
    assert half[1] == pytest.approx(per_example[1::2].mean(), rel=1e-5)


@pytest.mark.parametrize("name", ["esmm", "aitm", "escm2-dr"])
def test_chains_work_with_every_weighting_strategy(name, funnel):
    train, _, spec = funnel
    model = BUILDERS[name](spec, ESMM_TASKS)
    data = next(iter(dataset(train.head(64), spec, ESMM_TASKS, batch_size=64)))
    for strategy in tfmtl.weighting.STRATEGIES:
        model.compile(optimizer=keras.optimizers.SGD(0.01), weighting=strategy, monitor_gradients=True, run_eagerly=True)
        before = [v.numpy().copy() for v in model.trainable_variables]
        logs = model.train_on_batch(*data, return_dict=True)
        assert np.isfinite(logs["loss"]) and -1.0 <= logs["cos_ctr_ctcvr"] <= 1.0, (strategy, logs)
        moved = [not np.array_equal(v.numpy(), old) for v, old in zip(model.trainable_variables, before)]
        assert sum(moved) > len(moved) // 2, strategy


def test_aitm_calibrator_loss_and_transfer_weights(funnel):
    train, _, spec = funnel
    x, _ = next(iter(dataset(train.head(128), spec, ESMM_TASKS, batch_size=128)))
    model = AITM(spec, ESMM_TASKS, tower_units=[8], calibrator_weight=2.0)
    out = model(x, training=True)
    excess = np.maximum(numpy(out["ctcvr"]) - numpy(out["ctr"]), 0).mean()
    assert len(model.losses) == 1 and float(model.losses[0]) == pytest.approx(2.0 * excess, rel=1e-4, abs=1e-7)
    model(x, training=False)
    assert model.losses == []
    off = AITM(spec, ESMM_TASKS, tower_units=[8], calibrator_weight=0.0)
    off(x, training=True)
    assert off.losses == []
    weights = numpy(model.transfer_weights(x))
    assert weights.shape == (128, 1, 2)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(InputError, match="tower_units: AITM transfers between tower layers"):
        AITM(spec, ESMM_TASKS, tower_units=[])
    with pytest.raises(InputError, match="calibrator_weight: expected >= 0"):
        AITM(spec, ESMM_TASKS, calibrator_weight=-1.0)


def test_counterfactual_risks():
    labels = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    logits = tf.constant([2.0, -1.0, 0.5, 0.3])
    imputed_logits = tf.constant([0.0, 1.0, -2.0, 0.7])
    observed = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
    propensity = tf.constant([0.5, 0.001, 0.2, 0.1])
    bce = lambda r, z: -(r * np.log(sigmoid(z)) + (1 - r) * np.log(1 - sigmoid(z)))  # noqa: E731
    weight = observed / np.maximum(numpy(propensity), 0.01)
    z, imputed = numpy(logits), sigmoid(numpy(imputed_logits))
    ips = numpy(inverse_propensity_risk(labels, logits, observed, propensity, min_propensity=0.01))
    np.testing.assert_allclose(ips, weight * bce(labels, z), rtol=1e-5)
    assert ips[2] == ips[3] == 0.0 and ips[1] == pytest.approx(100 * bce(0.0, -1.0), rel=1e-5)
    error, imputed_error = bce(labels, z), bce(imputed, z)
    expected = imputed_error + weight * (error - imputed_error) + weight * (error - imputed_error) ** 2
    dr = doubly_robust_risk(labels, logits, imputed_logits, observed, propensity, min_propensity=0.01)
    np.testing.assert_allclose(numpy(dr), expected, rtol=1e-5)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([logits, imputed_logits, propensity])
        ips_sum = keras.ops.sum(inverse_propensity_risk(labels, logits, observed, propensity))
        dr_sum = keras.ops.sum(doubly_robust_risk(labels, logits, imputed_logits, observed, propensity))
    # The propensity weighs the loss without being trained by it.
    assert tape.gradient(ips_sum, propensity) is None and tape.gradient(dr_sum, propensity) is None
    # Inverse propensity leaves unclicked examples out; doubly robust pulls them to the imputed outcome.
    np.testing.assert_array_equal(numpy(tape.gradient(ips_sum, logits))[2:], 0.0)
    np.testing.assert_allclose(numpy(tape.gradient(dr_sum, logits))[2:], sigmoid(z[2:]) - imputed[2:], rtol=1e-5)
    # The imputation model learns on clicked examples only.
    imputation_gradient = numpy(tape.gradient(dr_sum, imputed_logits))
    assert (imputation_gradient[2:] == 0.0).all() and (imputation_gradient[:2] != 0.0).all()


@pytest.mark.parametrize("counterfactual", ["ips", "dr"])
def test_escm2_adds_the_counterfactual_risk_to_each_chained_task(counterfactual, long_funnel):
    train, _, spec = long_funnel
    x, y = next(iter(dataset(train.head(256), spec, CHAIN, batch_size=256)))
    model = ESCM2(spec, CHAIN, tower_units=[8], counterfactual=counterfactual, counterfactual_weight=0.3)
    steps = model._step_logits(x, training=False, for_loss=True)
    assert len(steps) == 3 + (2 if counterfactual == "dr" else 0)
    # Predicting and serving leave the imputation towers out.
    assert len(model._step_logits(x, training=False)) == 3
    logits = model._entire_space_logits(steps)
    labelled = model._labelled(y, None)
    plain = numpy(model._task_losses(labelled, logits))
    with_risks = numpy(model._task_losses(labelled, logits, steps))
    labels = {task.name: numpy(y[task.name]).reshape(-1) for task in CHAIN}
    for parent, child in ((0, 1), (1, 2)):
        args = (labels[CHAIN[child].name], steps[child])
        reached, propensity = labels[CHAIN[parent].name], keras.ops.sigmoid(logits[parent])
        if counterfactual == "ips":
            risk = inverse_propensity_risk(*args, reached, propensity)
        else:
            risk = doubly_robust_risk(*args, steps[3 + child - 1], reached, propensity)
        assert with_risks[child] == pytest.approx(plain[child] + 0.3 * numpy(risk).mean(), rel=1e-5)
    assert with_risks[0] == plain[0]
    # The imputation towers feed the loss only, not the outputs.
    assert sorted(model(x)) == ["cart", "cart_conditional", "click", "cvr", "purchase"]
    with pytest.raises(InputError, match="counterfactual: expected one of ips, dr, got 'snips'"):
        ESCM2(spec, CHAIN, counterfactual="snips")
    with pytest.raises(InputError, match="counterfactual_weight: expected >= 0"):
        ESCM2(spec, CHAIN, counterfactual_weight=-0.1)
    with pytest.raises(InputError, match=r"min_propensity: expected a value in \(0, 1\]"):
        ESCM2(spec, CHAIN, min_propensity=0.0)
    unchained = ESCM2(spec, [Task("click", "binary"), Task("cart", "binary")], counterfactual="dr", tower_units=[8])
    assert unchained.imputation is None and len(unchained._step_logits(x, training=False, for_loss=True)) == 2


# ----- data ----------------------------------------------------------------------
def test_synthetic_funnel_ground_truth():
    train, test = synthetic_funnel(num_train=20_000, num_test=500, stages=STAGES, num_users=100, num_items=50, seed=3)
    features = ["user", "item", *(f"x{i}" for i in range(8))]
    assert list(train.columns) == features + funnel_columns(STAGES) and len(test) == 500
    assert train.equals(synthetic_funnel(num_train=20_000, num_test=500, stages=STAGES, num_users=100,
                                         num_items=50, seed=3)[0])  # fmt: skip
    # A step happens only after the one before; its truth is known on every impression.
    np.testing.assert_array_equal(train["cart"], train["click"] * train["cart_if_click"])
    np.testing.assert_array_equal(train["purchase"], train["cart"] * train["purchase_if_cart"])
    every = pd.concat([train, test])
    assert every["click_probability"].mean() == pytest.approx(0.05, rel=1e-3)
    assert every["cart_probability"].mean() == pytest.approx(0.05, rel=1e-3)
    assert train["cart_if_click"].mean() == pytest.approx(0.05, abs=0.01)
    # Selection bias: clicked impressions are likelier to convert than the rest.
    clicked = train["click"] == 1
    assert train.loc[clicked, "cart_probability"].mean() > 1.2 * train.loc[~clicked, "cart_probability"].mean()
    log, _ = synthetic_funnel(num_train=100, num_test=10, ground_truth=False)
    assert list(log.columns) == features + ["click", "conversion"]
    with pytest.raises(InputError, match=r"rates: expected one rate in \(0, 1\) per stage \(2\)"):
        synthetic_funnel(rates=[0.1])
    with pytest.raises(InputError, match=r"stages: expected at least 2 distinct stage names"):
        synthetic_funnel(stages=["click"])


# ----- command line --------------------------------------------------------------
def test_task_flag_chain_syntax():
    assert _task_flag("ctcvr:binary:conversion:parent=ctr:conditional=cvr") == {
        "name": "ctcvr", "kind": "binary", "label": "conversion", "parent": "ctr", "conditional_name": "cvr"
    }  # fmt: skip
    assert _task_flag("buy:binary:parent=cart") == {"name": "buy", "kind": "binary", "parent": "cart"}
    assert _task_flag("x:binary:a:b") == {"name": "x", "kind": "binary", "label": "a:b"}


@pytest.fixture(scope="module")
def funnel_csv(funnel, tmp_path_factory):
    folder = tmp_path_factory.mktemp("funnel")
    train, test, _ = funnel
    log = [c for c in train.columns if c not in funnel_columns()] + ["click", "conversion"]
    train[log].head(3000).to_csv(folder / "train.csv", index=False)
    test[log].head(1000).to_csv(folder / "test.csv", index=False)
    return folder


@pytest.mark.parametrize("model", ["esmm", "aitm", "escm2"])
def test_each_chained_model_through_the_cli(model, funnel_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["train", "--model", model, "--train-data", str(funnel_csv / "train.csv"), "--test-data", str(funnel_csv / "test.csv"),
         "--task", "ctr:binary:click", "--task", "ctcvr:binary:conversion:parent=ctr:conditional=cvr",
         "--model-arg", "tower_units=[16]", "--epochs", "2", "--batch-size", "128", "--learning-rate", "0.01",
         "--out", str(out), "--verbose", "0"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["tasks"]["ctr"]["auc"] > 0.6, metrics
    loaded = keras.saving.load_model(out / "model.keras")
    assert type(loaded) is MODELS[model] and loaded.tasks == ESMM_TASKS
    predictions = tmp_path / "scores.csv"
    assert main(["predict", "--model", str(out), "--data", str(funnel_csv / "test.csv"), "--out", str(predictions)]) == 0
    assert sorted(pd.read_csv(predictions).columns) == ["ctcvr", "ctr", "cvr"]


def test_cli_chain_errors_and_funnel_recipes(funnel_csv, tmp_path, capsys):
    code = main(["train", "--model", "esmm", "--train-data", str(funnel_csv / "train.csv"), "--task", "ctr:binary:click",
                 "--task", "ctcvr:binary:conversion:parent=click", "--out", str(tmp_path), "--verbose", "0"])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("task 'ctcvr': parent 'click' is not one of the tasks ['ctr', 'ctcvr']")
    for model in ("esmm", "aitm", "escm2"):
        config = resolve(None, {"model": model, "dataset": "synthetic-funnel"})
        assert config == resolve(load_recipe(shipped_recipe(model, "synthetic-funnel")), {})
        assert [t.get("parent") for t in config["tasks"]] == [None, "ctr"]


def test_chained_outputs_are_served_by_name(funnel, tmp_path):
    from tfmtl.export import export_saved_model

    _, test, spec = funnel
    model = BUILDERS["esmm"](spec, ESMM_TASKS)
    version = export_saved_model(model, tmp_path / "esmm")
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    rows = test.head(64)
    served = signature(**{k: tf.constant(v) for k, v in spec.input_arrays(rows).items()})
    expected = model.predict(dataset(rows, spec, batch_size=64), verbose=0)
    assert set(served) == {"ctr", "ctcvr", "cvr"}
    for output, values in expected.items():
        np.testing.assert_allclose(numpy(served[output]), values, rtol=1e-5, atol=1e-7)
    described = json.loads((version / "assets.extra" / "tfmtl_signatures.json").read_text())["outputs"]
    assert described["cvr"]["kind"] == "derived" and described["ctcvr"]["kind"] == "binary"
