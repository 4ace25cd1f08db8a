"""Ready-made multi-task models, all on the same MultiTaskModel base."""

from tfmtl.zoo.mmoe import MMoE
from tfmtl.zoo.multi_task_model import MultiTaskModel
from tfmtl.zoo.shared_bottom import SharedBottom

# Command-line names of the models.
MODELS: dict[str, type[MultiTaskModel]] = {
    "shared-bottom": SharedBottom,
    "mmoe": MMoE,
}

__all__ = ["MMoE", "MODELS", "MultiTaskModel", "SharedBottom"]
