"""RLW: random loss weighting (Lin et al., 2021)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfmtl.weighting.base import TaskWeighting


@keras.saving.register_keras_serializable(package="tfmtl")
class RandomWeighting(TaskWeighting):
    """Weights the task losses by fresh random weights at every step.

    The weights are `softmax(z)` with `z ~ N(0, 1)` per task (Lin et al., "Reasonable
    Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning",
    TMLR 2022), so they sum to 1 and average `1 / num_tasks`.

    Args:
        seed: seed of the weight draws.

    Example:

    ```python
    model.compile(optimizer="adam", weighting=RandomWeighting(seed=1))
    ```
    """

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)
        self._drawn = None

    @property
    def variables(self) -> list[keras.Variable]:
        # The random state, saved with the model so that resumed training draws what it would have.
        return [self._seed_generator.state]

    def combine(self, task_losses: Any) -> Any:
        self._drawn = ops.softmax(keras.random.normal((len(self.tasks),), seed=self._seed_generator))
        return ops.sum(self._drawn * task_losses)

    def task_weights(self) -> Any:
        # The weights drawn by this step's combine() (same traced step).
        return self._drawn if self._drawn is not None else ops.ones((len(self.tasks),)) / len(self.tasks)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}
