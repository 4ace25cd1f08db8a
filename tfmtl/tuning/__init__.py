"""Automated search over zoo models, their arguments, training settings and task weights, with keras-tuner.

Needs the `tune` extra (`pip install "tfmtl[tune]"`): keras-tuner, matplotlib, tomli-w, PyYAML.
"""

from tfmtl.tuning.hypermodel import MultiTaskHyperModel
from tfmtl.tuning.leaderboard import format_leaderboard, leaderboard
from tfmtl.tuning.objective import TaskObjective
from tfmtl.tuning.pareto import pareto_front, plot_pareto_front
from tfmtl.tuning.pso import ParticleSwarm, ParticleSwarmOracle
from tfmtl.tuning.space import SearchSpace, layer_sizes, shipped_space
from tfmtl.tuning.tuners import TUNERS, make_tuner

__all__ = [
    "TUNERS",
    "MultiTaskHyperModel",
    "ParticleSwarm",
    "ParticleSwarmOracle",
    "SearchSpace",
    "TaskObjective",
    "format_leaderboard",
    "layer_sizes",
    "leaderboard",
    "make_tuner",
    "pareto_front",
    "plot_pareto_front",
    "shipped_space",
]
