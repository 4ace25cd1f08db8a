"""Counterfactual risks of a step observed only after its parent's: inverse propensity and doubly robust."""

from __future__ import annotations

from typing import Any

from keras import ops


def _inverse_propensity(observed: Any, propensity: Any, min_propensity: float) -> Any:
    # The propensity weights the CVR loss; its own gradient would reward raising pCTR
    # to shrink that loss, so it is a constant here, floored to bound the variance.
    return observed / ops.maximum(ops.stop_gradient(propensity), min_propensity)


def inverse_propensity_risk(
    labels: Any, logits: Any, observed: Any, propensity: Any, min_propensity: float = 0.01
) -> Any:
    """Per-example terms of the inverse-propensity-weighted log loss of a step over the entire space.

    A conversion label exists only where the click happened (`observed` = 1), but
    the CVR model is used on every impression. Weighting each observed example's
    log loss by `1 / P(observed)` makes the mean over *all* examples an unbiased
    estimate of the loss over the entire space, had every label been seen
    (ESCM², Wang et al., SIGIR 2022). Unobserved examples contribute 0.

    Args:
        labels: the step's outcome (read only where observed), `(batch,)`.
        logits: the step's logit given its parent's step (pCVR), `(batch,)`.
        observed: 1 where the parent's step happened (clicked), else 0.
        propensity: the predicted probability of the parent's step (pCTR); a
            constant for the gradient.
        min_propensity: floor of the propensity, so no weight exceeds `1 / min_propensity`.

    Returns:
        `(batch,)`: the mean over the batch is the risk.

    Example:

    ```python
    import numpy as np
    inverse_propensity_risk(np.array([1.0, 0.0]), np.array([2.0, 0.0]), np.array([1.0, 0.0]),
                            np.array([0.5, 0.1]))   # [2 log(1 + e^-2), 0]
    ```
    """
    losses = ops.binary_crossentropy(labels, logits, from_logits=True)
    return _inverse_propensity(observed, propensity, min_propensity) * losses


def doubly_robust_risk(
    labels: Any,
    logits: Any,
    imputed_logits: Any,
    observed: Any,
    propensity: Any,
    min_propensity: float = 0.01,
) -> Any:
    """Per-example terms of the doubly robust log loss of a step, plus the imputation model's loss.

    An imputation model guesses the step's outcome `r~` on every example; the
    imputed loss `e^ = logloss(r~, p)` of the prediction `p` stands in where the
    label is missing, and inverse-propensity-weighted corrections
    `o / o^ (e - e^)` remove its bias where the label is seen:
    `e^ + o / o^ (e - e^)`. The estimate is unbiased if either the propensities
    or the imputed outcomes are right, with lower variance than inverse propensity
    alone, and, unlike it, gives the prediction a gradient on unobserved examples
    too. The imputation model learns to predict the prediction's loss on observed
    examples, `o / o^ (e - e^)^2`. This is the joint learning of Wang et al.,
    "Doubly Robust Joint Learning for Recommendation on Data Missing Not at
    Random" (ICML 2019), as ESCM² (Wang et al., SIGIR 2022) uses it for CVR: each
    term gets only its own model's gradient.

    Args:
        labels: the step's outcome (read only where observed), `(batch,)`.
        logits: the step's logit given its parent's step (pCVR), `(batch,)`.
        imputed_logits: the imputation model's logit of the outcome, `(batch,)`.
        observed: 1 where the parent's step happened (clicked), else 0.
        propensity: the predicted probability of the parent's step (pCTR); a
            constant for the gradient.
        min_propensity: floor of the propensity.

    Returns:
        `(batch,)`: the mean over the batch is the doubly robust risk plus the
        imputation loss.

    Example:

    ```python
    import numpy as np
    doubly_robust_risk(np.array([1.0, 0.0]), np.array([2.0, 0.0]), np.array([1.0, -1.0]),
                       np.array([1.0, 0.0]), np.array([0.5, 0.1]))
    ```
    """
    weight = _inverse_propensity(observed, propensity, min_propensity)
    imputed = ops.stop_gradient(ops.sigmoid(imputed_logits))
    error = ops.binary_crossentropy(labels, logits, from_logits=True)
    imputed_error = ops.binary_crossentropy(imputed, logits, from_logits=True)
    risk = imputed_error + weight * (error - imputed_error)
    # The imputation model's view of the same error, with the prediction held fixed.
    error_guess = ops.binary_crossentropy(ops.sigmoid(imputed_logits), ops.stop_gradient(logits), from_logits=True)
    imputation_loss = weight * ops.square(ops.stop_gradient(error) - error_guess)
    return risk + imputation_loss
