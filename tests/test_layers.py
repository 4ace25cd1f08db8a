"""Unit tests of each layer: shapes, masks and missing values, gradients, config round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmtl
from tfmtl import layers
from tfmtl.features import CategoricalFeature, HashedFeature, ListFeature, NumericFeature


def round_trip(layer, inputs):
    """Rebuilds `layer` from its config and checks the clone computes the same."""
    clone = layer.__class__.from_config(layer.get_config())
    outputs = layer(inputs)
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(inputs)), keras.ops.convert_to_numpy(outputs))
    # And through Keras' own serialisation, which needs the registration.
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(again) is type(layer)
    return outputs


CITY = CategoricalFeature("city", ("Oslo", "Rome"), 4)
CODE = CategoricalFeature("code", ("1", "2", "3"), 4, dtype="int64")
USER = HashedFeature("user", num_bins=50, embedding_dim=4)
GENRES = ListFeature("genres", ("a", "b", "c"), 4)


def field_inputs():
    return {
        "city": tf.constant(["Rome", "Paris", "Oslo"]),
        "code": tf.constant([3, 9, 1], tf.int64),
        "user": tf.constant(["u1", "u2", "u1"]),
        "genres": tf.constant(["a|b", "", "zz|c"]),
    }


def test_field_embedding_rows_and_oov():
    layer = layers.FieldEmbedding([CITY, CODE, USER, GENRES])
    out = keras.ops.convert_to_numpy(round_trip(layer, field_inputs()))
    assert out.shape == (3, 4, 4)
    table = keras.ops.convert_to_numpy(layer.embedding.embeddings)
    assert table.shape[0] == layer.num_rows
    # Unseen values use their feature's own OOV row: "Paris" and code 9 differ.
    assert not np.allclose(out[1, 0], out[1, 1])
    # Equal hashed values get equal rows.
    np.testing.assert_allclose(out[0, 2], out[2, 2])
    # An empty list pools to zeros; a list with an unknown value still pools the known ones.
    np.testing.assert_allclose(out[1, 3], 0.0)
    assert np.abs(out[2, 3]).sum() > 0


def test_field_embedding_one_table_for_all_features():
    layer = layers.FieldEmbedding([CITY, CODE, USER, GENRES])
    layer(field_inputs())
    assert len(layer.trainable_weights) == 1


def test_field_embedding_same_value_in_two_features_gets_two_rows():
    a = CategoricalFeature("a", ("x",), 4)
    b = CategoricalFeature("b", ("x",), 4)
    layer = layers.FieldEmbedding([a, b])
    out = keras.ops.convert_to_numpy(layer({"a": tf.constant(["x"]), "b": tf.constant(["x"])}))
    assert not np.allclose(out[0, 0], out[0, 1])


def test_field_embedding_reads_number_codes_sent_as_any_text_as_their_category():
    # Serving sends raw text: "4", " 4" and "4.0" must all be the category "4.0" of a number-coded feature,
    # as `categorical_values` makes them for a DataFrame; an unseen number or text is out of vocabulary.
    zone = CategoricalFeature("zone", ("4.0", "2.0", "", "x"), 4, numbers=True)
    plain = CategoricalFeature("room", ("4.0", "2.0"), 4)
    layer = layers.FieldEmbedding([zone, plain])
    sent = tf.constant(["4", " 4", "4.0", "+4e0", "2", "", "x", "5", "nan"])
    ids = layer.lookup_ids({"zone": sent, "room": sent}).numpy()
    reference = layer.lookup_ids({"zone": tf.constant(["4.0"] * 3 + ["4.0", "2.0", "", "x", "?", "?"]), "room": sent})
    np.testing.assert_array_equal(ids[:, 0], reference.numpy()[:, 0])
    assert ids[0, 1] != ids[2, 1]  # a feature without `numbers` keeps text as it is: "4" is not "4.0"


def test_field_embedding_hashes_each_number_code_one_way_whatever_its_spelling():
    ids = layers.FieldEmbedding([HashedFeature("user", 1000, 4, numbers=True)]).lookup_ids
    spelled = ids({"user": tf.constant(["12345", "12345.0", " 12345 ", "1.2345e4", "0.5", ".50", "abc"])}).numpy()[:, 0]
    assert len(set(spelled[:4])) == 1 and spelled[4] == spelled[5]
    assert len({spelled[0], spelled[4], spelled[6]}) == 3


def test_field_embedding_rejects_mixed_dims():
    with pytest.raises(ValueError, match="one embedding_dim"):
        layers.FieldEmbedding([CITY, CategoricalFeature("x", ("a",), 8)])


def test_numeric_encoder_standardises_and_imputes():
    features = [NumericFeature("age", 40.0, 100.0, missing_indicator=True), NumericFeature("n", 0.0, 4.0)]
    layer = layers.NumericEncoder(features)
    out = round_trip(layer, {"age": tf.constant([30.0, np.nan]), "n": tf.constant([2.0, np.nan])})
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), [[-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], atol=1e-5)


def test_feature_encoder_fuses_tables_per_embedding_size():
    from tfmtl import FeatureSpec

    spec = FeatureSpec([CITY, CODE, CategoricalFeature("big", ("q",), 8), NumericFeature("age", 0.0, 1.0)])
    encoder = layers.FeatureEncoder(spec)
    inputs = {**field_inputs(), "big": tf.constant(["q", "q", "r"]), "age": tf.constant([1.0, 2.0, 3.0])}
    out = round_trip(encoder, inputs)
    assert out.shape == (3, 2 * 4 + 8 + 1) == (3, encoder.output_dim)
    assert len(encoder.field_embeddings) == 2
    separate = layers.FeatureEncoder(spec, fused=False)
    assert separate(inputs).shape == out.shape and len(separate.field_embeddings) == 3


def test_feature_encoder_columns_locate_each_feature():
    from tfmtl import FeatureSpec

    age = NumericFeature("age", 40.0, 100.0, missing_indicator=True)
    spec = FeatureSpec([CITY, CategoricalFeature("big", ("q",), 8), age, NumericFeature("n", 0.0, 1.0)])
    encoder = layers.FeatureEncoder(spec)
    inputs = {"city": tf.constant(["Rome", "Oslo"]), "big": tf.constant(["q", "r"]),
              "age": tf.constant([30.0, np.nan]), "n": tf.constant([1.0, 2.0])}  # fmt: skip
    out = keras.ops.convert_to_numpy(encoder(inputs))
    tables = {layer.field_names[0]: layer(inputs).numpy()[:, 0] for layer in encoder.field_embeddings}
    np.testing.assert_array_equal(out[:, encoder.columns(["city"])], tables["city"])
    np.testing.assert_array_equal(out[:, encoder.columns(["big"])], tables["big"])
    # A numeric feature's standardised value, then its missing indicator.
    np.testing.assert_allclose(out[:, encoder.columns(["age"])], [[-1.0, 0.0], [0.0, 1.0]], atol=1e-6)
    assert encoder.columns(["n", "city"]) == encoder.columns(["n"]) + encoder.columns(["city"])
    assert sorted(encoder.columns(spec.names)) == list(range(encoder.output_dim))
    with pytest.raises(tfmtl.InputError, match=r"features \['nope'\]: not in the FeatureSpec"):
        encoder.columns(["nope"])


def test_parallel_dense_equals_independent_dense_layers():
    layer = layers.ParallelDense(parallel=3, units=5, activation="relu")
    x = np.random.default_rng(0).normal(size=(7, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(round_trip(layer, x))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    for p in range(3):
        np.testing.assert_allclose(out[:, p], np.maximum(x @ kernel[p] + bias[p], 0), rtol=1e-5, atol=1e-5)
    per_member = np.random.default_rng(1).normal(size=(7, 3, 4)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(per_member))
    np.testing.assert_allclose(out[:, 1], np.maximum(per_member[:, 1] @ kernel[1] + bias[1], 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["softmax", "gelu", lambda x: x / keras.ops.sum(x, -1, keepdims=True)])
def test_parallel_dense_activation_applies_to_each_member_alone(activation):
    # The shared-input path runs elementwise activations on all members' units at once;
    # one that normalises along the units must still see each member apart.
    layer = layers.ParallelDense(parallel=3, units=4, activation=activation)
    x = np.random.default_rng(0).uniform(1, 2, size=(6, 5)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    for p in range(3):
        expected = keras.ops.convert_to_numpy(layer.activation(x @ kernel[p] + bias[p]))
        np.testing.assert_allclose(out[:, p], expected, rtol=1e-5, atol=1e-6)


def test_parallel_dense_members_start_different():
    layer = layers.ParallelDense(parallel=4, units=8)
    layer.build((None, 6))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    assert not np.allclose(kernel[0], kernel[1])


def test_mlp_and_parallel_mlp_shapes():
    x = np.ones((5, 6), "float32")
    assert round_trip(layers.MLP([8, 3], dropout=0.1), x).shape == (5, 3)
    assert round_trip(layers.ParallelMLP(4, [8, 3]), x).shape == (5, 4, 3)


def test_softmax_gate_is_a_distribution():
    gate = layers.SoftmaxGate(num_gates=2, num_experts=5)
    weights = keras.ops.convert_to_numpy(round_trip(gate, np.random.default_rng(0).normal(size=(9, 6))))
    assert weights.shape == (9, 2, 5)
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


def test_mixture_of_experts_mixes_with_gate_weights():
    moe = layers.MixtureOfExperts(num_tasks=3, num_experts=4, expert_units=[6])
    x = np.random.default_rng(0).normal(size=(5, 7)).astype("float32")
    mixed = round_trip(moe, x)
    assert mixed.shape == (5, 3, 6)
    mixed, weights = moe(x, return_gate_weights=True)
    experts = moe.experts(x)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(mixed),
        np.einsum("bte,beu->btu", keras.ops.convert_to_numpy(weights), keras.ops.convert_to_numpy(experts)),
        rtol=1e-5,
        atol=1e-6,
    )
    one_gate = layers.MixtureOfExperts(num_tasks=3, num_experts=4, expert_units=[6], num_gates=1)
    mixed = keras.ops.convert_to_numpy(one_gate(x))
    np.testing.assert_allclose(mixed[:, 0], mixed[:, 2])


def test_mixture_of_experts_gradients_reach_every_expert_and_gate():
    moe = layers.MixtureOfExperts(num_tasks=2, num_experts=4, expert_units=[6])
    x = tf.random.normal((16, 5))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(moe(x) ** 2)
    grads = tape.gradient(loss, moe.trainable_weights)
    assert len(grads) == len(moe.trainable_weights) == 4
    expert_kernel_grad = grads[0].numpy()
    assert all(np.abs(expert_kernel_grad[e]).sum() > 0 for e in range(4))
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads)


def test_task_towers_shapes():
    towers = layers.TaskTowers(num_tasks=2, units=[8], output_units=3)
    assert round_trip(towers, np.ones((4, 2, 5), "float32")).shape == (4, 2, 3)
    assert towers(np.ones((4, 5), "float32")).shape == (4, 2, 3)
    linear = layers.TaskTowers(num_tasks=2)
    assert linear(np.ones((4, 2, 5), "float32")).shape == (4, 2, 1)


def test_task_towers_scale_each_layers_input():
    towers = layers.TaskTowers(num_tasks=2, units=[8, 4])
    x = np.random.default_rng(0).normal(size=(3, 2, 5)).astype("float32")
    ones = [np.ones((3, 2, width), "float32") for width in (5, 8, 4)]
    np.testing.assert_allclose(towers(x, scales=ones).numpy(), towers(x).numpy(), rtol=1e-6)
    # One row for all towers, made one per task by the first scales.
    np.testing.assert_allclose(towers(x[:, :1], scales=ones).numpy(), towers(np.repeat(x[:, :1], 2, axis=1)).numpy())
    # A 2-D input is shared by every tower, example by example (here batch 2 = tasks 2, where broadcasting could pair
    # example b with task b instead).
    shared = x[:2, 0]
    scales = [np.random.default_rng(1).uniform(0.5, 1.5, size=(2, 2, width)).astype("float32") for width in (5, 8, 4)]
    np.testing.assert_allclose(towers(shared, scales=scales).numpy(), towers(shared[:, None], scales=scales).numpy())
    # A zero scale cuts a task's tower off from its input.
    cut = [np.concatenate([np.zeros((3, 1, 5)), np.ones((3, 1, 5))], axis=1).astype("float32"), *ones[1:]]
    out = towers(x, scales=cut).numpy()
    assert np.allclose(out[:, 0], out[0, 0]) and not np.allclose(out[:, 1], out[0, 1])
    with pytest.raises(ValueError, match=r"scales: expected one per layer \(3\), got 2"):
        towers(x, scales=ones[:2])


AUXILIARY_LOSS_LAYERS = {
    "noisy_top_k": (lambda: layers.NoisyTopKGate(2, 4, k=2), 5),
    "dselect_k": (lambda: layers.DSelectKGate(2, 4, k=2), 5),
    "calibrator": (lambda: layers.ExpectationCalibrator([(0, 1)]), 2),
}


@pytest.mark.parametrize("name", AUXILIARY_LOSS_LAYERS)
def test_layers_with_auxiliary_losses_train_in_a_plain_keras_model_under_bf16(name):
    # Keras adds a layer's losses to the float32 loss: a bf16 auxiliary loss made fit fail.
    make, width = AUXILIARY_LOSS_LAYERS[name]
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        inputs = keras.Input((width,))
        model = keras.Model(inputs, make()(inputs))
        model.compile("adam", "mse")
        x = np.random.default_rng(0).uniform(size=(8, width)).astype("float32")
        history = model.fit(x, np.zeros((8, *model.output.shape[1:]), "float32"), verbose=0).history
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(history["loss"][0])


def test_field_tokens_of_numbers_alone():
    assert layers.FieldTokens(8)([], np.ones((4, 5), "float32")).shape == (4, 5, 8)
