"""Two regression tasks with a chosen correlation: the synthetic data of the MMoE paper."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfmtl.errors import InputError

LABELS = ("y1", "y2")


def synthetic_correlated(
    correlation: float,
    num_train: int = 10_000,
    num_test: int = 2_000,
    dim: int = 100,
    num_sines: int = 10,
    scale: float = 1.0,
    noise_std: float = 0.1,
    seed: int = 0,
    sine_seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns `(train, test)` DataFrames of two regression tasks whose relatedness is `correlation`.

    The generator of Ma et al., "Modeling Task Relationships in Multi-task Learning
    with Multi-gate Mixture-of-Experts" (KDD 2018), section 4: with orthogonal unit
    vectors `u1`, `u2`, the task weights are `w1 = c u1` and
    `w2 = c (p u1 + sqrt(1 - p^2) u2)`, so their cosine is `p = correlation`; for
    `x ~ N(0, I_dim)` the labels are
    `y_i = w_i.x + sum_j sin(alpha_j w_i.x + beta_j) + eps_i`, `eps_i ~ N(0, noise_std^2)`.
    The paper calls `alpha_j`, `beta_j` given parameters without values; here they are
    drawn from N(0, 1) with `sine_seed`, which stays fixed across `seed`s, so that
    runs with different seeds sample new data from the same pair of functions. The
    noise default, 0.1, is the paper's variance of 0.01. The Pearson correlation of `y1` and `y2` grows with `p` but is
    lower than `p` (the sines are not linear).

    Args:
        correlation: `p`, in [-1, 1].
        num_train, num_test: rows of each table.
        dim: input dimension `d` (>= 2).
        num_sines: sine terms `m`.
        scale: `c`.
        noise_std: standard deviation of the label noise.
        seed: seeds the task weight directions, the inputs and the noise.
        sine_seed: seeds `alpha_j` and `beta_j`.

    Returns:
        DataFrames with float columns `x0 ... x{dim-1}` and labels `y1`, `y2`.

    Example:

    ```python
    train, test = synthetic_correlated(0.5)
    tasks = [tfmtl.Task("y1", "regression"), tfmtl.Task("y2", "regression")]
    features = tfmtl.FeatureSpec.infer(train, exclude=["y1", "y2"])
    ```
    """
    if not -1.0 <= correlation <= 1.0:
        raise InputError(f"correlation: expected a value in [-1, 1], got {correlation}")
    if dim < 2:
        raise InputError(f"dim: expected at least 2 input dimensions, got {dim}")
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if value < 1:
            raise InputError(f"{name}: expected a positive number of rows, got {value}")
    rng = np.random.default_rng(seed)
    # The first two columns of a random orthogonal matrix are orthogonal unit vectors.
    basis, _ = np.linalg.qr(rng.normal(size=(dim, 2)))
    u1, u2 = basis[:, 0], basis[:, 1]
    w1 = scale * u1
    w2 = scale * (correlation * u1 + np.sqrt(1.0 - correlation**2) * u2)
    shape = np.random.default_rng(sine_seed)
    alpha, beta = shape.normal(size=num_sines), shape.normal(size=num_sines)

    def table(rows: int) -> pd.DataFrame:
        x = rng.normal(size=(rows, dim))
        columns = {f"x{i}": x[:, i].astype("float32") for i in range(dim)}
        for label, w in zip(LABELS, (w1, w2)):
            dot = x @ w
            y = dot + np.sin(np.outer(dot, alpha) + beta).sum(axis=1) + rng.normal(scale=noise_std, size=rows)
            columns[label] = y.astype("float32")
        return pd.DataFrame(columns)

    return table(num_train), table(num_test)
