"""Impressions -> clicks -> conversions with a known conversion probability for every impression."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tfmtl.errors import InputError

STAGES = ("click", "conversion")


def funnel_columns(stages: Sequence[str] = STAGES) -> list[str]:
    """The columns of `synthetic_funnel` that are not features: observed steps and the ground truth.

    Example:

    ```python
    train, test = synthetic_funnel(num_train=1_000, num_test=100)
    features = tfmtl.FeatureSpec.infer(train, exclude=funnel_columns())   # user, item, x0 ... x7
    ```
    """
    columns = list(stages) + [f"{stage}_probability" for stage in stages]
    return columns + [f"{stage}_if_{before}" for before, stage in zip(stages, stages[1:])]


def synthetic_funnel(
    num_train: int = 200_000,
    num_test: int = 100_000,
    stages: Sequence[str] = STAGES,
    rates: Sequence[float] | None = None,
    num_users: int = 2_000,
    num_items: int = 1_000,
    num_numeric: int = 8,
    latent_dim: int = 4,
    shared: float = 0.8,
    seed: int = 0,
    ground_truth: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns `(train, test)` impression logs of a funnel with sample-selection bias and known truth.

    Every row is an impression of an item to a user, with features `user` and
    `item` (ids, drawn with long-tailed popularity: id `r` with probability
    proportional to `(r + 10)^-1`) and `x0 ... x{num_numeric-1}` (context, N(0, 1)).
    Each stage `s` (`click`, then `conversion`, ...) has a logit

        f_s = c_s + u_s[user] + v_s[item] + 0.5 <a_s[user], b_s[item]> / sqrt(latent_dim)
              + 0.5 w_s.x / sqrt(num_numeric)

    where the user and item effects `u_s`, `v_s`, the latent vectors `a_s`, `b_s` (of
    size `latent_dim`) and the context weights `w_s` are N(0, 1) draws, so the ids'
    main effects dominate, as in click logs. The stages share what drives them:
    every parameter of stage `s` is `shared * common + sqrt(1 - shared^2) * own_s`,
    with `common` and `own_s` independent draws, so `shared` is the correlation of
    a user's (or item's, or context weight's) effect on any two stages. The
    intercept `c_s` is set so that the mean of `sigmoid(f_s)` over all rows (train
    and test) is `rates[s]` (default: 5 % click; a conversion probability given a
    click of 5 % on average over all impressions). Because the stages share their
    drivers, impressions that reach a stage are those likelier to pass the next:
    with the defaults about 11-13 % of the clicks convert, and with
    `rates=[0.1, 0.6]` about 77-79 %.

    A stage happens only if the one before it did: `click ~ Bernoulli(sigmoid(f_click))`,
    and for a later stage, `<stage>_if_<before> ~ Bernoulli(sigmoid(f_stage))` is
    drawn for *every* impression (the outcome had the previous stage happened)
    and the observed `<stage> = <before> * <stage>_if_<before>`. Observed
    conversions come only from clicked impressions, which are not a random sample
    (sample-selection bias) and are few (data sparsity), while the ground truth is
    known everywhere: `<stage>_probability` is `sigmoid(f_s)`, the probability of
    the stage given the one before (for `click`, given the impression), on every
    row. So a conversion model's quality over the entire impression space is
    measured exactly: its AUC against `conversion_if_click` (or its error against
    `conversion_probability`) over all impressions.

    Args:
        num_train, num_test: impressions in each table.
        stages: the funnel's stage names, first to last (at least 2).
        rates: mean over all impressions of each stage's probability given the one before.
        num_users, num_items: how many ids.
        num_numeric: context features.
        latent_dim: size of the user and item latent vectors.
        shared: how much the stages share, in [0, 1].
        seed: seeds everything.
        ground_truth: include the `_probability` and `_if_` columns; without them
            the tables are what a log would record (features and observed stages).

    Returns:
        DataFrames with the features, the observed stages (0/1 floats) and, with
        `ground_truth`, the truth columns (`funnel_columns(stages)` lists all but
        the features).

    Example:

    ```python
    train, test = synthetic_funnel(num_train=50_000, num_test=10_000)
    tasks = [tfmtl.Task("ctr", "binary", label="click"),
             tfmtl.Task("ctcvr", "binary", label="conversion", parent="ctr", conditional_name="cvr")]
    features = tfmtl.FeatureSpec.infer(train, exclude=funnel_columns())
    ```
    """
    stages = list(stages)
    if len(stages) < 2 or len(set(stages)) < len(stages):
        raise InputError(f"stages: expected at least 2 distinct stage names, got {stages}")
    rates = [0.05] * len(stages) if rates is None else list(rates)
    if len(rates) != len(stages) or not all(0 < r < 1 for r in rates):
        raise InputError(f"rates: expected one rate in (0, 1) per stage ({len(stages)}), got {rates}")
    if not 0.0 <= shared <= 1.0:
        raise InputError(f"shared: expected a value in [0, 1], got {shared}")
    for name, value in (("num_train", num_train), ("num_test", num_test), ("num_users", num_users),
                        ("num_items", num_items), ("latent_dim", latent_dim)):  # fmt: skip
        if value < 1:
            raise InputError(f"{name}: expected a positive integer, got {value}")
    rng = np.random.default_rng(seed)
    rows = num_train + num_test

    def popular(count: int) -> np.ndarray:
        weights = 1.0 / (np.arange(count) + 10.0)
        return rng.choice(count, size=rows, p=weights / weights.sum())

    users, items = popular(num_users), popular(num_items)
    x = rng.normal(size=(rows, num_numeric))

    def per_stage(*shape: int) -> list[np.ndarray]:
        common = rng.normal(size=shape)
        return [shared * common + np.sqrt(1.0 - shared**2) * rng.normal(size=shape) for _ in stages]

    user_vectors = per_stage(num_users, latent_dim)
    item_vectors = per_stage(num_items, latent_dim)
    user_bias, item_bias = per_stage(num_users), per_stage(num_items)
    weights = per_stage(num_numeric)
    columns: dict[str, np.ndarray] = {
        "user": np.array([f"u{i}" for i in range(num_users)], object)[users],
        "item": np.array([f"i{i}" for i in range(num_items)], object)[items],
    }
    columns.update({f"x{i}": x[:, i].astype("float32") for i in range(num_numeric)})
    reached = np.ones(rows, bool)
    for s, (stage, rate) in enumerate(zip(stages, rates)):
        logit = (
            user_bias[s][users]
            + item_bias[s][items]
            + 0.5 * np.sum(user_vectors[s][users] * item_vectors[s][items], axis=1) / np.sqrt(latent_dim)
            + 0.5 * x @ weights[s] / np.sqrt(max(num_numeric, 1))
        )
        probability = _sigmoid(logit + _intercept(logit, rate))
        outcome = rng.random(rows) < probability
        columns[f"{stage}_probability"] = probability.astype("float32")
        if s:
            columns[f"{stage}_if_{stages[s - 1]}"] = outcome.astype("float32")
        reached &= outcome
        columns[stage] = reached.astype("float32")
    features = ["user", "item", *(f"x{i}" for i in range(num_numeric))]
    table = pd.DataFrame(columns)[features + (funnel_columns(stages) if ground_truth else stages)]
    return table.iloc[:num_train].reset_index(drop=True), table.iloc[num_train:].reset_index(drop=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _intercept(logit: np.ndarray, rate: float) -> float:
    """The shift `c` with `mean(sigmoid(logit + c)) == rate`, by bisection (the mean rises with `c`)."""
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if _sigmoid(logit + middle).mean() < rate else (low, middle)
    return 0.5 * (low + high)
