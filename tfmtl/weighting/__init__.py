"""Task weighting strategies: how per-task losses become one training update.

Loss-level strategies weight the task losses (static, uncertainty, RLW, DWA, GradNorm,
FAMO); gradient-level ones combine the tasks' gradients of the shared parameters
(PCGrad, CAGrad, MGDA, Aligned-MTL). Any strategy works with any model:
`model.compile(weighting="pcgrad")` or `model.compile(weighting=PCGrad(seed=1))`.
"""

from __future__ import annotations

from tfmtl.errors import InputError
from tfmtl.weighting.aligned_mtl import AlignedMTL
from tfmtl.weighting.base import TaskWeighting
from tfmtl.weighting.cagrad import CAGrad
from tfmtl.weighting.dwa import DynamicWeightAverage
from tfmtl.weighting.famo import FAMO
from tfmtl.weighting.gradnorm import GradNorm
from tfmtl.weighting.mgda import MGDA
from tfmtl.weighting.pcgrad import PCGrad
from tfmtl.weighting.random_weighting import RandomWeighting
from tfmtl.weighting.static import StaticWeighting
from tfmtl.weighting.uncertainty import UncertaintyWeighting

# Command-line names.
STRATEGIES: dict[str, type[TaskWeighting]] = {
    "static": StaticWeighting,
    "uncertainty": UncertaintyWeighting,
    "rlw": RandomWeighting,
    "pcgrad": PCGrad,
    "cagrad": CAGrad,
    "mgda": MGDA,
    "aligned-mtl": AlignedMTL,
    "dwa": DynamicWeightAverage,
    "gradnorm": GradNorm,
    "famo": FAMO,
}


def get(identifier: str | TaskWeighting | None) -> TaskWeighting:
    """Returns a strategy from a name (see `STRATEGIES`), an instance, or None (static).

    Example:

    ```python
    tfmtl.weighting.get("gradnorm")   # GradNorm(), what compile(weighting="gradnorm") uses
    ```
    """
    if identifier is None:
        return StaticWeighting()
    if isinstance(identifier, TaskWeighting):
        return identifier
    if isinstance(identifier, str) and identifier in STRATEGIES:
        return STRATEGIES[identifier]()
    raise InputError(f"weighting: unknown strategy {identifier!r}, expected one of {', '.join(STRATEGIES)}")


__all__ = [
    "STRATEGIES",
    "AlignedMTL",
    "CAGrad",
    "DynamicWeightAverage",
    "FAMO",
    "GradNorm",
    "MGDA",
    "PCGrad",
    "RandomWeighting",
    "StaticWeighting",
    "TaskWeighting",
    "UncertaintyWeighting",
    "get",
]
