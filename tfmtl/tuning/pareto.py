"""The Pareto front of trials over their tasks' metrics, and its plot."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tfmtl.data import write_atomically
from tfmtl.errors import InputError


def pareto_front(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Which rows of `points` no other row dominates (as good in every column, better in one).

    Args:
        points: `(trials, metrics)`; NaN rows are never on the front.
        directions: per column, `"max"` or `"min"`.

    Returns:
        A boolean mask over the rows.

    Example:

    ```python
    pareto_front(np.array([[0.9, 0.5], [0.8, 0.6], [0.7, 0.4]]), ["max", "max"])   # [True, True, False]
    ```
    """
    points = np.asarray(points, dtype="float64")
    if points.ndim != 2 or points.shape[1] != len(directions):
        raise InputError(f"points: expected shape (trials, {len(directions)}), got {points.shape}")
    unknown = sorted(set(directions) - {"max", "min"})
    if unknown:
        raise InputError(f"directions: expected 'max' or 'min', got {unknown}")
    better_up = points * np.where(np.asarray(directions) == "max", 1.0, -1.0)
    valid = ~np.isnan(better_up).any(axis=1)
    # dominates[j, i]: row j is at least as good as row i everywhere and better somewhere.
    at_least = (better_up[:, None, :] >= better_up[None, :, :]).all(axis=2)
    better = (better_up[:, None, :] > better_up[None, :, :]).any(axis=2)
    dominates = at_least & better & valid[:, None]
    return valid & ~dominates.any(axis=0)


def plot_pareto_front(table: pd.DataFrame, columns: Sequence[str], directions: Sequence[str], path: str | Path) -> Path:
    """Writes a PNG: every trial on each pair of `columns`, the front highlighted, atomically.

    `table` has the `columns` and a boolean `pareto` column (see `leaderboard`).

    Example:

    ```python
    import pandas as pd
    table = pd.DataFrame({"val_income_auc": [0.941, 0.948, 0.945], "val_marital_auc": [0.994, 0.992, 0.995]})
    plot_pareto_front(table, ["val_income_auc", "val_marital_auc"], ["max", "max"], "pareto.png")
    ```
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    pairs = list(itertools.combinations(range(len(columns)), 2)) or [(0, 0)]
    figure, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.5), squeeze=False)
    front = table[table["pareto"]]
    for axis, (i, j) in zip(axes[0], pairs):
        x, y = columns[i], columns[j]
        axis.scatter(table[x], table[y], color="0.6", s=18, label="trial")
        ordered = front.sort_values(x)
        axis.plot(ordered[x], ordered[y], "o-", color="tab:red", label="Pareto front")
        axis.set_xlabel(f"{x} ({'higher' if directions[i] == 'max' else 'lower'} is better)")
        axis.set_ylabel(f"{y} ({'higher' if directions[j] == 'max' else 'lower'} is better)")
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize="small")
    figure.suptitle(f"{len(table)} trials, {len(front)} on the Pareto front")
    figure.tight_layout()
    written = write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=110))
    plt.close(figure)
    return written
