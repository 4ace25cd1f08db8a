"""The probabilities of a chain of tasks (impression -> click -> conversion), in log space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import ops


def entire_space_logit(step_logits: Sequence[Any]) -> Any:
    """The logit of `prod_k sigmoid(step_logits[k])`, computed without forming the product.

    Each step's logit gives its probability given the step before (ESMM: pCTR, then
    pCVR); the entire-space probability of the last step is the product along the
    chain (pCTCVR = pCTR x pCVR). Its logit is `log p - log(1 - p)` with
    `log p = sum_k log sigmoid(z_k)` and, since
    `1 - prod_k s_k = sum_k (prod_{i<k} s_i)(1 - s_k)`,
    `log(1 - p) = logsumexp_k(sum_{i<k} log sigmoid(z_i) + log sigmoid(-z_k))`:
    only log-sigmoids and a logsumexp, finite with finite gradients for any logits,
    so a cross-entropy from this logit needs no clipping.

    Args:
        step_logits: one logit tensor per step, root first, all of the same shape.

    Returns:
        The entire-space logit, of the steps' shape.

    Example:

    ```python
    import numpy as np
    from keras import ops
    p = ops.sigmoid(entire_space_logit([np.array([0.0]), np.array([2.0])]))   # 0.5 * sigmoid(2)
    ```
    """
    if len(step_logits) == 1:
        return step_logits[0]
    z = ops.stack(list(step_logits), axis=-1)
    log_steps = ops.log_sigmoid(z)
    reached = ops.cumsum(log_steps, axis=-1) - log_steps  # log P(every earlier step happens)
    return ops.sum(log_steps, axis=-1) - ops.logsumexp(reached + ops.log_sigmoid(-z), axis=-1)


def conditional_probability(logit: Any, parent_logit: Any) -> Any:
    """`min(p / p_parent, 1)` for entire-space logits of a step and of the step before it.

    The probability of a step given its parent's, when a model predicts each step's
    entire-space probability directly (AITM); at most 1 where the prediction breaks
    the funnel's order.

    Example:

    ```python
    import numpy as np
    conditional_probability(np.array([-3.0]), np.array([0.0]))   # sigmoid(-3) / 0.5
    ```
    """
    return ops.exp(ops.minimum(ops.log_sigmoid(logit) - ops.log_sigmoid(parent_logit), 0.0))
