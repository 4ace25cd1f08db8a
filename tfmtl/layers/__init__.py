"""Keras layers that multi-task models are assembled from; each works on its own too."""

from tfmtl.layers.cross_stitch_unit import CrossStitchUnit
from tfmtl.layers.customized_gate_control import CustomizedGateControl
from tfmtl.layers.dselect_k_gate import DSelectKGate
from tfmtl.layers.expectation_calibrator import ExpectationCalibrator
from tfmtl.layers.feature_encoder import FeatureEncoder
from tfmtl.layers.field_embedding import FieldEmbedding
from tfmtl.layers.field_self_attention import FieldSelfAttention
from tfmtl.layers.field_tokens import FieldTokens
from tfmtl.layers.gate_neural_unit import GateNeuralUnit
from tfmtl.layers.gates import GATES, get_gate
from tfmtl.layers.information_transfer import AdaptiveInformationTransfer
from tfmtl.layers.mixture_of_experts import MixtureOfExperts
from tfmtl.layers.mlp import MLP
from tfmtl.layers.noisy_top_k_gate import NoisyTopKGate
from tfmtl.layers.numeric_encoder import NumericEncoder
from tfmtl.layers.parallel_dense import ParallelDense
from tfmtl.layers.parallel_mlp import ParallelMLP
from tfmtl.layers.softmax_gate import SoftmaxGate
from tfmtl.layers.task_attention_fusion import TaskAttentionFusion
from tfmtl.layers.task_towers import TaskTowers

__all__ = [
    "GATES",
    "MLP",
    "AdaptiveInformationTransfer",
    "CrossStitchUnit",
    "CustomizedGateControl",
    "DSelectKGate",
    "ExpectationCalibrator",
    "FeatureEncoder",
    "FieldEmbedding",
    "FieldSelfAttention",
    "FieldTokens",
    "GateNeuralUnit",
    "MixtureOfExperts",
    "NoisyTopKGate",
    "NumericEncoder",
    "ParallelDense",
    "ParallelMLP",
    "SoftmaxGate",
    "TaskAttentionFusion",
    "TaskTowers",
    "get_gate",
]
