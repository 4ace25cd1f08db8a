"""make_tuner: a keras-tuner Tuner by name, resuming any search already in its directory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner

from tfmtl.errors import InputError
from tfmtl.tuning.pso import ParticleSwarm

TUNERS = {
    "random": keras_tuner.RandomSearch,
    "hyperband": keras_tuner.Hyperband,
    "bayesian": keras_tuner.BayesianOptimization,
    "pso": ParticleSwarm,
}


def make_tuner(
    name: str,
    hypermodel: keras_tuner.HyperModel,
    objective: keras_tuner.Objective,
    *,
    max_trials: int,
    max_epochs: int,
    directory: str,
    project_name: str = "search",
    seed: int | None = None,
    initial_values: Sequence[Mapping[str, Any]] = (),
) -> keras_tuner.Tuner:
    """Returns the tuner `name` (see `TUNERS`); it continues the search saved in `directory/project_name`.

    `max_trials` bounds random, Bayesian and particle-swarm searches; Hyperband's
    budget is `max_epochs` (its largest trial; factor 3, one iteration).
    `initial_values` are where the particle swarm starts (other tuners ignore them).
    Set `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` to
    search with keras-tuner's chief and workers.

    Example:

    ```python
    tuner = make_tuner("pso", hypermodel, hypermodel.objective.keras_objective, max_trials=20, max_epochs=2,
                       directory="runs/search")
    ```
    """
    if name not in TUNERS:
        raise InputError(f"--tuner: unknown tuner {name!r}, expected one of {', '.join(TUNERS)}")
    if max_trials < 1 or max_epochs < 1:
        raise InputError(f"--max-trials and --epochs: expected positive integers, got {max_trials} and {max_epochs}")
    common = {"objective": objective, "seed": seed, "directory": directory, "project_name": project_name, "overwrite": False}
    if name == "hyperband":
        return keras_tuner.Hyperband(hypermodel, max_epochs=max_epochs, factor=3, **common)
    if name == "pso":
        return ParticleSwarm(hypermodel, max_trials=max_trials, initial_values=initial_values, **common)
    return TUNERS[name](hypermodel, max_trials=max_trials, **common)
