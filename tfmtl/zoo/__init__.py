"""Ready-made multi-task models, all on the same MultiTaskModel base."""

from tfmtl.zoo.aitm import AITM
from tfmtl.zoo.cross_stitch import CrossStitch
from tfmtl.zoo.escm2 import ESCM2
from tfmtl.zoo.esmm import ESMM
from tfmtl.zoo.mha_fusion import MHAFusion
from tfmtl.zoo.mmoe import MMoE, OMoE
from tfmtl.zoo.multi_task_model import MultiTaskModel
from tfmtl.zoo.pepnet import PEPNet
from tfmtl.zoo.ple import PLE
from tfmtl.zoo.shared_bottom import SharedBottom
from tfmtl.zoo.stem import STEM

# Command-line names of the models.
MODELS: dict[str, type[MultiTaskModel]] = {
    "shared-bottom": SharedBottom,
    "mmoe": MMoE,
    "omoe": OMoE,
    "ple": PLE,
    "cross-stitch": CrossStitch,
    "mha-fusion": MHAFusion,
    "esmm": ESMM,
    "aitm": AITM,
    "escm2": ESCM2,
    "stem": STEM,
    "pepnet": PEPNet,
}

__all__ = [
    "AITM",
    "ESCM2",
    "ESMM",
    "CrossStitch",
    "MHAFusion",
    "MMoE",
    "MODELS",
    "MultiTaskModel",
    "OMoE",
    "PEPNet",
    "PLE",
    "STEM",
    "SharedBottom",
]
