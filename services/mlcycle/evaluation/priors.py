"""Class priors: moving calibrated posteriors to another prior, and estimating an unknown one.

A classifier's calibrated posteriors carry the class prior of the data they were
calibrated on. Traffic with another prior shifts them in a known way (Saerens,
Latinne and Decaestecker, "Adjusting the outputs of a classifier to new a priori
probabilities: a simple procedure", Neural Computation 14(1), 2002), assuming
only the prior changes, not what each class looks like:

- **prior known**: :func:`adjust_posteriors` re-weights each class's posterior by
  ``new prior / old prior`` and renormalizes, in closed form; for two classes
  that is adding ``logit(new) - logit(old)`` to the positive logit
  (:func:`prior_shift`), an affine map an exported model can apply itself;
- **prior unknown**: :func:`estimate_prior` finds it from unlabeled posteriors by
  EM, alternating that re-weighting with the mean of the re-weighted posteriors
  (the maximum-likelihood prior of the unlabeled sample).

With calibrated posteriors under the prior of the traffic, the decision that
minimizes the expected cost, a false positive costing ``c`` times a false negative,
is positive when ``p >= c / (1 + c)`` (:func:`bayes_threshold`).
:func:`implied_precision_recall` says what a threshold yields at another prior
from the rates it has within each class, which do not depend on the prior.

Pure numpy, so that the trainer (which chooses a threshold) and the inference
service (which watches the live prior) share it without a heavy import. QuaPy's
EMQ is the same EM, but it brings pandas, matplotlib and data-set downloaders
into the serving image for what is a loop of a few lines here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlcycle.common.errors import InvalidInput

# Probabilities are kept this far from 0 and 1, so that logits and ratios stay finite.
EPSILON = 1e-7
EM_TOLERANCE = 1e-6
EM_MAX_ITERATIONS = 1000


def logit(p: float | np.ndarray) -> float | np.ndarray:
    """``log(p / (1 - p))``, with ``p`` clipped to ``[EPSILON, 1 - EPSILON]``."""
    q = np.clip(p, EPSILON, 1.0 - EPSILON)
    out = np.log(q) - np.log1p(-q)
    return float(out) if np.ndim(out) == 0 else out


def sigmoid(x: float | np.ndarray) -> float | np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow."""
    out = np.exp(-np.logaddexp(0.0, -np.asarray(x, np.float64)))
    return float(out) if np.ndim(out) == 0 else out


def prior_shift(old_prior: float, new_prior: float) -> float:
    """What moving a binary posterior from ``old_prior`` to ``new_prior`` adds to its logit."""
    _check_rate(old_prior, "old_prior")
    _check_rate(new_prior, "new_prior")
    return float(logit(new_prior)) - float(logit(old_prior))


def adjust_posteriors(
    probabilities: np.ndarray, old_priors: np.ndarray, new_priors: np.ndarray
) -> np.ndarray:
    """Posteriors ``(n, K)`` made under ``old_priors`` ``(K,)`` moved to ``new_priors``.

    ``p'_k ∝ p_k * new_k / old_k``, renormalized per row (Saerens et al., eq. 2.4).
    """
    probs = _check_probabilities(probabilities)
    old, new = _check_priors(old_priors, probs.shape[1]), _check_priors(new_priors, probs.shape[1])
    weighted = probs * (new / old)
    return weighted / weighted.sum(axis=1, keepdims=True)


def adjust_binary(scores: np.ndarray, old_prior: float, new_prior: float) -> np.ndarray:
    """Positive-class posteriors ``(n,)`` under ``old_prior``, moved to ``new_prior``."""
    shift = prior_shift(old_prior, new_prior)
    return np.asarray(sigmoid(logit(np.asarray(scores, np.float64)) + shift))


@dataclass(frozen=True)
class PriorEstimate:
    """What EM found: the priors of the unlabeled sample, and how the iteration went."""

    priors: np.ndarray  # (K,)
    iterations: int
    converged: bool
    n: int

    @property
    def positive_rate(self) -> float:
        """The prior of class 1 (the positive class of a binary task)."""
        return float(self.priors[1])


def estimate_prior(
    probabilities: np.ndarray,
    model_priors: np.ndarray,
    *,
    tolerance: float = EM_TOLERANCE,
    max_iterations: int = EM_MAX_ITERATIONS,
) -> PriorEstimate:
    """The class priors of a sample, from a model's posteriors ``(n, K)`` under ``model_priors``.

    EM (Saerens et al., section 2.3): start from the model's priors; E-step,
    move every posterior to the current priors (:func:`adjust_posteriors`);
    M-step, the new priors are the mean adjusted posterior. Stops when no prior
    moves by more than ``tolerance``. Each step does not decrease the likelihood
    of the sample, so it converges (slowly when the classes overlap much).
    """
    probs = _check_probabilities(probabilities)
    if len(probs) == 0:
        raise InvalidInput("no posteriors to estimate a prior from")
    start = _check_priors(model_priors, probs.shape[1])
    if max_iterations < 1:
        raise InvalidInput(f"max_iterations must be at least 1, not {max_iterations}")
    ratio_base = probs / start
    priors = start
    for iteration in range(1, max_iterations + 1):
        weighted = ratio_base * priors
        adjusted = weighted / weighted.sum(axis=1, keepdims=True)
        updated = adjusted.mean(axis=0)
        moved = float(np.abs(updated - priors).max())
        priors = updated
        if moved <= tolerance:
            return PriorEstimate(priors, iteration, True, len(probs))
    return PriorEstimate(priors, max_iterations, False, len(probs))


def estimate_positive_rate(
    scores: np.ndarray, model_prior: float, **options: float | int
) -> PriorEstimate:
    """:func:`estimate_prior` for positive-class posteriors ``(n,)`` made under ``model_prior``."""
    _check_rate(model_prior, "model_prior")
    p = np.asarray(scores, np.float64)
    if p.ndim != 1:
        raise InvalidInput(f"scores must have shape (n,), not {p.shape}")
    probs = _check_probabilities(np.stack([1.0 - p, p], axis=1))
    if len(probs) == 0:
        raise InvalidInput("no posteriors to estimate a prior from")
    tolerance = float(options.get("tolerance", EM_TOLERANCE))
    max_iterations = int(options.get("max_iterations", EM_MAX_ITERATIONS))
    # The same EM as estimate_prior, on the odds alone: a few 1-D operations per step, so a
    # window of 10,000 scores takes well under a millisecond per step.
    odds = (probs[:, 1] / model_prior) / (probs[:, 0] / (1.0 - model_prior))
    prior = float(model_prior)
    for iteration in range(1, max_iterations + 1):
        ratio = prior / (1.0 - prior)
        weighted = odds * ratio
        updated = float(np.mean(weighted / (1.0 + weighted)))
        moved = abs(updated - prior)
        prior = min(max(updated, EPSILON), 1.0 - EPSILON)
        if moved <= tolerance:
            return PriorEstimate(np.array([1.0 - prior, prior]), iteration, True, len(p))
    return PriorEstimate(np.array([1.0 - prior, prior]), max_iterations, False, len(p))


def bayes_threshold(cost_ratio: float) -> float:
    """The cut on a calibrated positive posterior that minimizes expected cost: ``c / (1 + c)``.

    ``cost_ratio`` is what a false positive costs over what a false negative
    costs: predicting positive costs ``c * (1 - p)`` in expectation, negative ``p``.
    """
    if not (np.isfinite(cost_ratio) and cost_ratio > 0):
        raise InvalidInput(f"cost_ratio must be a positive number, not {cost_ratio!r}")
    return float(cost_ratio / (1.0 + cost_ratio))


@dataclass(frozen=True)
class Rates:
    """A threshold's rates within each class (which a change of prior leaves as they are)."""

    tpr: float  # share of positives at or above the threshold (recall)
    fpr: float  # share of negatives at or above it
    positives: int
    negatives: int


def class_rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Rates:
    """True- and false-positive rates of ``scores >= threshold`` against binary ``labels``."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels)
    if s.ndim != 1 or s.shape != y.shape:
        raise InvalidInput(f"scores and labels must be (n,) alike, not {s.shape} and {y.shape}")
    positive, negative = y == 1, y == 0
    if not positive.any() or not negative.any():
        raise InvalidInput("class rates need both classes among the labels")
    predicted = s >= threshold
    return Rates(
        tpr=float(predicted[positive].mean()),
        fpr=float(predicted[negative].mean()),
        positives=int(positive.sum()),
        negatives=int(negative.sum()),
    )


def implied_precision_recall(rates: Rates, prior: float) -> dict[str, float | None]:
    """Precision, recall and the flagged share of traffic whose positive rate is ``prior``.

    ``precision = π·TPR / (π·TPR + (1 − π)·FPR)``; recall is the TPR. Precision
    is None when nothing would be flagged.
    """
    _check_rate(prior, "prior")
    flagged = prior * rates.tpr + (1.0 - prior) * rates.fpr
    precision = prior * rates.tpr / flagged if flagged > 0 else None
    return {"precision": precision, "recall": rates.tpr, "flagged_rate": flagged}


def precision_lower_bound(rates: Rates, prior: float, z: float = 1.645) -> float | None:
    """The implied precision with the TPR at its lower and the FPR at its upper Wilson bound.

    At a low prior, precision hangs on the false-positive rate, which a few hundred
    held-out negatives pin down only roughly (none flagged is not a rate of 0);
    ``z = 1.645`` puts each rate at its one-sided 95% bound.
    """
    tpr = wilson_bounds(rates.tpr, rates.positives, z)[0]
    fpr = wilson_bounds(rates.fpr, rates.negatives, z)[1]
    return implied_precision_recall(Rates(tpr, fpr, rates.positives, rates.negatives), prior)[
        "precision"
    ]


def wilson_bounds(rate: float, n: int, z: float = 1.645) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``rate`` observed over ``n`` trials."""
    if n < 1:
        raise InvalidInput(f"a proportion needs at least one trial, not {n}")
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def _check_rate(value: float, name: str) -> None:
    if not (isinstance(value, int | float | np.floating) and 0.0 < value < 1.0):
        raise InvalidInput(f"{name} must be a number strictly between 0 and 1, not {value!r}")


def _check_probabilities(probabilities: np.ndarray) -> np.ndarray:
    probs = np.asarray(probabilities, np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise InvalidInput(f"probabilities must have shape (n, K >= 2), not {probs.shape}")
    if not np.all(np.isfinite(probs)) or (probs.size and (probs.min() < 0 or probs.max() > 1)):
        raise InvalidInput("probabilities must be finite and within [0, 1]")
    # Clipped away from 0, so that a class never becomes impossible under any prior.
    probs = np.clip(probs, EPSILON, 1.0)
    return probs / probs.sum(axis=1, keepdims=True)


def _check_priors(priors: np.ndarray, k: int) -> np.ndarray:
    p = np.asarray(priors, np.float64)
    if p.shape != (k,) or not np.all(np.isfinite(p)) or p.min() <= 0:
        raise InvalidInput(f"priors must be {k} positive numbers, not {priors!r}")
    return p / p.sum()
