"""Task weighting strategies: how per-task losses become one training update."""

from __future__ import annotations

from tfmtl.errors import InputError
from tfmtl.weighting.base import TaskWeighting
from tfmtl.weighting.static import StaticWeighting
from tfmtl.weighting.uncertainty import UncertaintyWeighting

STRATEGIES: dict[str, type[TaskWeighting]] = {
    "static": StaticWeighting,
    "uncertainty": UncertaintyWeighting,
}


def get(identifier: str | TaskWeighting | None) -> TaskWeighting:
    """Returns a strategy from a name (`"static"`, `"uncertainty"`), an instance or None (static)."""
    if identifier is None:
        return StaticWeighting()
    if isinstance(identifier, TaskWeighting):
        return identifier
    if isinstance(identifier, str) and identifier in STRATEGIES:
        return STRATEGIES[identifier]()
    raise InputError(f"weighting: unknown strategy {identifier!r}, expected one of {', '.join(STRATEGIES)}")


__all__ = ["STRATEGIES", "StaticWeighting", "TaskWeighting", "UncertaintyWeighting", "get"]
