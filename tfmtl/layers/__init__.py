"""Keras layers that multi-task models are assembled from; each works on its own too."""

from tfmtl.layers.feature_encoder import FeatureEncoder
from tfmtl.layers.field_embedding import FieldEmbedding
from tfmtl.layers.mixture_of_experts import MixtureOfExperts
from tfmtl.layers.mlp import MLP
from tfmtl.layers.numeric_encoder import NumericEncoder
from tfmtl.layers.parallel_dense import ParallelDense
from tfmtl.layers.parallel_mlp import ParallelMLP
from tfmtl.layers.softmax_gate import SoftmaxGate
from tfmtl.layers.task_towers import TaskTowers

__all__ = [
    "MLP",
    "FeatureEncoder",
    "FieldEmbedding",
    "MixtureOfExperts",
    "NumericEncoder",
    "ParallelDense",
    "ParallelMLP",
    "SoftmaxGate",
    "TaskTowers",
]
