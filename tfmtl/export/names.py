"""Signature names: feature and output names made valid for a SavedModel signature."""

from __future__ import annotations

import re
from collections.abc import Iterable

from tfmtl.errors import InputError

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_]")


def signature_name(name: str) -> str:
    """Returns `name` with every character other than an ASCII letter, digit or `_` replaced by `_`.

    TensorFlow turns signature keys into graph op names, which may not hold spaces
    and most punctuation, so a CSV column such as `"Review Text"` is served as
    `Review_Text`. Op names may not start with `_` either, so such a name gets an `x`
    in front. Names that are already valid stay as they are.

    Example:

    ```python
    signature_name("Review Text")   # "Review_Text"
    signature_name("price ($)")     # "price____"
    signature_name("_user")         # "x_user"
    ```
    """
    served = _NOT_ALLOWED.sub("_", name)
    return "x" + served if served.startswith("_") else served


def signature_names(names: Iterable[str], what: str) -> dict[str, str]:
    """Maps each name to its signature name; two names that map to the same one are an error.

    `what` says which names these are (`"feature"`, `"output"`) for the error message.
    """
    mapping: dict[str, str] = {}
    taken: dict[str, str] = {}
    for name in names:
        served = signature_name(name)
        if served in taken:
            raise InputError(
                f"{what}s {taken[served]!r} and {name!r} would both be served as {served!r}; rename one of them"
            )
        taken[served] = name
        mapping[name] = served
    return mapping
