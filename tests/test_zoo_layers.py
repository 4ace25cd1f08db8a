"""Unit tests of the zoo's layers: gates, CGC, cross-stitch, attention fusion, field attention."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_layers import round_trip

from tfmtl import InputError, layers

GATE_KINDS = {
    "softmax": {},
    "noisy_top_k": {"k": 2},
    "dselect_k": {"k": 2},
}


def inputs(*shape, seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=shape).astype("float32"))


def gradients(layer, x, **call_args):
    with tf.GradientTape() as tape:
        out = layer(x, training=True, **call_args)
        loss = tf.reduce_sum(tf.sin(out)) + sum(layer.losses)
    grads = tape.gradient(loss, layer.trainable_variables)
    return {v.path: tf.convert_to_tensor(g) for v, g in zip(layer.trainable_variables, grads) if g is not None}


def assert_distributions(weights):
    weights = keras.ops.convert_to_numpy(weights)
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind", GATE_KINDS)
def test_every_gate_gives_distributions_and_trains(kind):
    gate = layers.get_gate({"name": kind, **GATE_KINDS[kind]}, num_gates=3, num_experts=6)
    x = inputs(64, 5)
    weights = round_trip(gate, x)
    assert weights.shape == (64, 3, 6)
    assert_distributions(weights)
    assert_distributions(gate(x, training=True))
    # One input per gate works too (what CGC's task gates read).
    assert_distributions(gate(inputs(64, 3, 5)))
    grads = gradients(gate, x)
    assert len(grads) == len(gate.trainable_variables)
    for path, grad in grads.items():
        assert np.abs(grad.numpy()).sum() > 0, path


def test_noisy_top_k_keeps_k_experts_and_balances_load():
    gate = layers.NoisyTopKGate(num_gates=2, num_experts=8, k=2, seed=1)
    x = inputs(256, 5)
    gate.build(x.shape)
    gate.logits.kernel.assign(np.random.default_rng(0).normal(size=(2, 5, 8)))
    for training in (False, True):
        weights = keras.ops.convert_to_numpy(gate(x, training=training))
        assert ((weights > 0).sum(-1) == 2).all()
    assert len(gate.losses) == 2  # importance and load, while training only
    importance, load = (float(loss) for loss in gate.losses)
    assert importance > 0 and load > 0
    gate(x)
    assert gate.losses == []
    # Without noise the load estimate is undefined: importance only.
    quiet = layers.NoisyTopKGate(2, 8, k=2, noise=False)
    quiet(x, training=True)
    assert len(quiet.losses) == 1 and len(quiet.trainable_variables) == 2
    with pytest.raises(ValueError, match="1 <= k <= num_experts"):
        layers.NoisyTopKGate(2, 4, k=5)


def test_noisy_top_k_load_loss_grows_when_one_expert_takes_the_load():
    gate = layers.NoisyTopKGate(1, 3, k=1, importance_weight=0.0, load_weight=1.0, seed=0)
    x = inputs(512, 4)
    gate(x, training=True)
    (balanced,) = gate.losses  # zero-initialised kernels: every expert equally likely
    gate.logits.bias.assign([[3.0, 0.0, 0.0]])
    gate(x, training=True)
    (skewed,) = gate.losses
    assert float(balanced) < 0.05 < 0.5 < float(skewed)


def test_dselect_k_selects_at_most_k_experts_once_the_bits_saturate():
    gate = layers.DSelectKGate(num_gates=2, num_experts=5, k=2)  # 5 is not a power of 2
    x = inputs(32, 4)
    gate(x)
    assert_distributions(gate(x))
    # Saturated bits: kernel 0, bias far outside the smooth step's cubic region.
    gate.bit_logits.kernel.assign(np.zeros(gate.bit_logits.kernel.shape))
    coin = np.random.default_rng(0).random(gate.bit_logits.bias.shape) < 0.5
    gate.bit_logits.bias.assign(np.where(coin, -5.0, 5.0))
    weights = keras.ops.convert_to_numpy(gate(x, training=True))
    assert ((weights > 0).sum(-1) <= 2).all()
    assert_distributions(weights)
    (entropy,) = gate.losses
    assert float(entropy) == pytest.approx(0.0, abs=1e-4)  # one-hot selectors
    gate.bit_logits.bias.assign(np.zeros(gate.bit_logits.bias.shape))  # every code equally likely
    gate(x, training=True)
    # 8 codes over 5 experts: experts 0-2 have two codes each. Weight 0.01, 2 gates x 2 selectors.
    folded = np.array([2, 2, 2, 1, 1]) / 8
    assert float(gate.losses[0]) == pytest.approx(0.01 * 4 * -(folded * np.log(folded)).sum(), rel=1e-3)


def test_get_gate_by_name_options_and_instance():
    assert isinstance(layers.get_gate("softmax", 2, 4), layers.SoftmaxGate)
    gate = layers.get_gate({"name": "noisy_top_k", "k": 1}, 2, 4)
    assert isinstance(gate, layers.NoisyTopKGate) and gate.k == 1
    assert layers.get_gate(gate, 2, 4) is gate
    with pytest.raises(InputError, match="unknown gate 'sparse', expected one of softmax, noisy_top_k, dselect_k"):
        layers.get_gate("sparse", 2, 4)
    with pytest.raises(InputError, match=r"gate 'noisy_top_k': unknown option\(s\) \['kk'\], expected some of imp"):
        layers.get_gate({"name": "noisy_top_k", "kk": 1}, 2, 4)
    with pytest.raises(ValueError, match=r"expected 2 gate\(s\) over 5 experts, got \(2, 4\)"):
        layers.get_gate(gate, 2, 5)


@pytest.mark.parametrize("kind", GATE_KINDS)
def test_mixture_of_experts_takes_any_gate(kind):
    moe = layers.MixtureOfExperts(2, 4, [6], gate={"name": kind, **GATE_KINDS[kind]})
    x = inputs(64, 5)
    assert round_trip(moe, x).shape == (64, 2, 6)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(moe))
    assert type(clone.gate) is type(moe.gate)
    grads = gradients(moe, x)
    expert_kernel = grads[moe.experts.dense_layers[0].kernel.path].numpy()
    assert all(np.abs(expert_kernel[e]).sum() > 0 for e in range(4))
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads.values())


def test_cgc_mixes_shared_and_own_experts_only():
    level = layers.CustomizedGateControl(num_tasks=2, num_shared_experts=3, num_task_experts=2, expert_units=[6])
    x = inputs(16, 5)
    out, weights = level(x, return_gate_weights=True)
    assert round_trip(level, x).shape == (16, 2, 6)
    weights = keras.ops.convert_to_numpy(weights)
    assert weights.shape == (16, 2, 3 + 2 * 2)
    assert_distributions(weights)
    assert (weights[:, 0, 5:] == 0).all() and (weights[:, 1, 3:5] == 0).all()
    # Task 1's experts do not change task 0's output.
    kernel = level.task_experts.dense_layers[0].kernel
    changed = kernel.numpy()
    changed[2:] += 1.0
    kernel.assign(changed)
    after = keras.ops.convert_to_numpy(level(x))
    np.testing.assert_allclose(after[:, 0], keras.ops.convert_to_numpy(out)[:, 0], rtol=1e-6)
    assert not np.allclose(after[:, 1], keras.ops.convert_to_numpy(out)[:, 1])
    grads = gradients(level, x)
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads.values())


def test_stacked_cgc_levels_with_shared_gate_are_ple():
    inner = layers.CustomizedGateControl(2, 3, 2, [8], gate="dselect_k", shared_output=True)
    last = layers.CustomizedGateControl(2, 3, 2, [4], gate="dselect_k")
    x = inputs(16, 5)
    hidden, weights = inner(x, return_gate_weights=True)
    assert hidden.shape == (16, 3, 8)  # two tasks, then the shared mixture
    assert weights.shape == (16, 3, 7)
    assert_distributions(weights)  # the shared gate sees every expert
    assert round_trip(last, hidden).shape == (16, 2, 4)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(last(inner(x, training=True), training=True))
    variables = inner.trainable_variables + last.trainable_variables
    assert all(np.abs(g.numpy()).sum() > 0 for g in tape.gradient(loss, variables))
    with pytest.raises(InputError, match="gate: expected a gate name"):
        layers.CustomizedGateControl(2, 1, 1, [4], gate=layers.SoftmaxGate(2, 2))
    with pytest.raises(ValueError, match="must be >= 1"):
        layers.CustomizedGateControl(2, 0, 1, [4])


def test_cross_stitch_unit_mixes_columns():
    stitch = layers.CrossStitchUnit(num_tasks=3, self_weight=0.8)
    x = inputs(4, 3, 5)
    out = keras.ops.convert_to_numpy(round_trip(stitch, x))
    alpha = stitch.alpha.numpy()
    np.testing.assert_allclose(np.diag(alpha), 0.8)
    np.testing.assert_allclose(alpha.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out, np.einsum("ts,bsu->btu", alpha, x.numpy()), rtol=1e-5, atol=1e-6)
    assert all(np.abs(g.numpy()).sum() > 0 for g in gradients(stitch, x).values())


def test_task_attention_fusion_masks_tokens():
    fusion = layers.TaskAttentionFusion(num_tasks=2, num_heads=2)
    tokens = inputs(4, 6, 8)
    assert round_trip(fusion, tokens).shape == (4, 2, 8)
    mask = np.array([[True] * 4 + [False] * 2] * 4)
    out, scores = fusion(tokens, token_mask=mask, return_attention_scores=True)
    scores = keras.ops.convert_to_numpy(scores)
    assert scores.shape == (4, 2, 2, 6)
    assert_distributions(scores)
    assert (scores[..., 4:] == 0).all()
    # Masked tokens do not matter, whatever their values.
    noisy = tokens.numpy()
    noisy[:, 4:] = 100.0
    np.testing.assert_allclose(fusion(noisy, token_mask=mask), out, rtol=1e-5, atol=1e-5)
    grads = gradients(fusion, tokens)
    assert set(grads) >= {fusion.task_queries.embeddings.path}
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads.values())


def test_field_tokens_one_token_per_field():
    tokens = layers.FieldTokens(units=6)
    fields, numeric = [inputs(4, 3, 8), inputs(4, 2, 4, seed=1)], inputs(4, 5, seed=2)
    out = tokens(fields, numeric)
    assert out.shape == (4, 3 + 2 + 5, 6)
    expected = numeric.numpy()[:, :, None] * tokens.numeric_kernel.numpy() + tokens.numeric_bias.numpy()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out)[:, 5:], expected, rtol=1e-5, atol=1e-6)
    clone = layers.FieldTokens.from_config(tokens.get_config())
    clone(fields, numeric)
    clone.set_weights(tokens.get_weights())
    np.testing.assert_allclose(clone(fields, numeric), out)
    assert layers.FieldTokens(6)([inputs(4, 3, 8)]).shape == (4, 3, 6)


def test_field_self_attention_shapes_mask_and_gradients():
    attention = layers.FieldSelfAttention(num_layers=2, num_heads=2, units=8)
    tokens = inputs(4, 5, 6)
    out = round_trip(attention, tokens)
    assert out.shape == (4, 5, 8)
    mask = np.array([[True, True, True, False, False]] * 4)
    masked = keras.ops.convert_to_numpy(attention(tokens, token_mask=mask))
    noisy = tokens.numpy()
    noisy[:, 3:] = 50.0
    # The kept fields' outputs do not depend on the masked fields.
    kept = keras.ops.convert_to_numpy(attention(noisy, token_mask=mask))[:, :3]
    np.testing.assert_allclose(kept, masked[:, :3], rtol=1e-5, atol=1e-5)
    assert all(np.abs(g.numpy()).sum() > 0 for g in gradients(attention, tokens).values())


def test_gate_neural_unit_scales_within_its_range_and_trains():
    gate = layers.GateNeuralUnit(units=8, output_dim=6, scale=2.0)
    x = inputs(32, 5)
    scales = keras.ops.convert_to_numpy(round_trip(gate, x))
    assert scales.shape == (32, 6) and (scales > 0).all() and (scales < 2).all()
    # Untrained, a sigmoid near 0.5 times 2 leaves what it scales about as it was.
    assert abs(scales.mean() - 1.0) < 0.3
    grads = gradients(gate, x)
    assert len(grads) == 4 and all(np.abs(g.numpy()).sum() > 0 for g in grads.values())
    with pytest.raises(ValueError, match="scale: expected > 0"):
        layers.GateNeuralUnit(8, 6, scale=0.0)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda x: layers.MixtureOfExperts(2, 4, [8])(x, return_gate_weights=True), (10,)),
        (lambda x: layers.CustomizedGateControl(2, 2, 2, [8], shared_output=True)(x, return_gate_weights=True), (10,)),
        (lambda x: layers.AdaptiveInformationTransfer(3, [(0, 1), (1, 2)])(x, return_attention=True), (3, 8)),
        (lambda x: layers.TaskAttentionFusion(2, 2)(x, return_attention_scores=True), (6, 8)),
    ],
)
def test_layers_that_also_return_weights_work_in_a_functional_model(make, shape):
    inputs = keras.Input(shape)
    outputs, weights = make(inputs)
    model = keras.Model(inputs, [outputs, weights])
    got = model.predict(np.ones((4, *shape), "float32"), verbose=0)
    assert [tuple(g.shape) for g in got] == [(4, *outputs.shape[1:]), (4, *weights.shape[1:])]
