"""Calibration of soft labels against gold: reliability bins and expected calibration error.

A soft label is calibrated when, among the items it gives probability ~p,
a share ~p turn out right. :func:`reliability` bins the items by confidence
(equal-width bins over [0, 1], right-closed like ``(0.1, 0.2]``; a confidence
of exactly 0 falls in the first bin) and reports, per bin, the mean
confidence, the observed accuracy and the count — the points of a
reliability diagram. :func:`expected_calibration_error` is the standard
top-label ECE over those bins: the count-weighted mean gap between
confidence and accuracy.

:func:`fit_platt` makes binary scores calibrated: Platt scaling, a logistic
regression of the gold label on the score's logit (``sigmoid(a * logit + b)``),
fitted on held-out rows. Temperature scaling is its special case ``b = 0``; the
free intercept also absorbs a prior the training reweighted (balanced class
weights), so the calibrated posteriors carry the held-out rows' own prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlcycle.common.errors import InvalidInput


@dataclass(frozen=True)
class Platt:
    """``p = sigmoid(scale * logit + shift)``: a binary score's logit mapped to a calibrated one."""

    scale: float
    shift: float
    # Held-out rows the map was fitted on, and Newton steps taken.
    n: int
    iterations: int

    def logits(self, logits: np.ndarray) -> np.ndarray:
        """The calibrated logits of ``logits``."""
        return self.scale * np.asarray(logits, np.float64) + self.shift

    def as_dict(self) -> dict[str, float | int | str]:
        """JSON-friendly figures for lineage and reports."""
        return {
            "method": "platt",
            "scale": self.scale,
            "shift": self.shift,
            "n": self.n,
            "iterations": self.iterations,
        }


def fit_platt(logits: np.ndarray, gold: np.ndarray, max_iterations: int = 100) -> Platt:
    """Platt scaling of binary ``logits`` ``(n,)`` against ``gold`` 0/1 ``(n,)``.

    Newton's method on the log loss, with Platt's smoothed targets
    (``(N+ + 1) / (N+ + 2)`` for a positive, ``1 / (N- + 2)`` for a negative),
    so that separable rows give a finite map rather than an infinite slope.
    Both classes must be present.
    """
    x = np.asarray(logits, np.float64)
    y = np.asarray(gold)
    if x.ndim != 1 or x.shape != y.shape:
        raise InvalidInput(f"logits and gold must be (n,) alike, not {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidInput("logits must be finite")
    positives, negatives = int((y == 1).sum()), int((y == 0).sum())
    if positives == 0 or negatives == 0 or positives + negatives != len(y):
        raise InvalidInput("Platt scaling needs 0/1 gold with both classes present")
    target = np.where(y == 1, (positives + 1) / (positives + 2), 1.0 / (negatives + 2))
    design = np.stack([x, np.ones_like(x)], axis=1)
    params = np.array([1.0, 0.0])

    def loss(theta: np.ndarray) -> float:
        z = design @ theta
        return float(np.sum(np.logaddexp(0.0, z) - target * z))

    current = loss(params)
    iterations = 0
    for _ in range(max_iterations):
        iterations += 1
        z = design @ params
        p = np.exp(-np.logaddexp(0.0, -z))
        gradient = design.T @ (p - target)
        hessian = design.T @ (design * (p * (1.0 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        # Halve the step until the loss does not rise (Newton can overshoot far from the optimum).
        for _ in range(30):
            candidate = params - step
            value = loss(candidate)
            if value <= current + 1e-12:
                break
            step /= 2.0
        else:
            break
        params, previous, current = candidate, current, value
        if abs(previous - current) <= 1e-10 * max(1.0, abs(current)):
            break
    return Platt(float(params[0]), float(params[1]), len(x), iterations)


@dataclass(frozen=True)
class Reliability:
    """Per-bin figures of a reliability diagram; empty bins have NaN means and count 0."""

    edges: np.ndarray  # (n_bins + 1,) bin edges, 0 to 1
    confidence: np.ndarray  # (n_bins,) mean predicted probability in the bin
    accuracy: np.ndarray  # (n_bins,) observed frequency of being right in the bin
    count: np.ndarray  # (n_bins,) int64 items in the bin

    def as_dict(self) -> dict[str, list[float | None] | list[int]]:
        """JSON-friendly lists; empty bins' means are None."""

        def floats(values: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else float(v) for v in values]

        return {
            "edges": [float(e) for e in self.edges],
            "confidence": floats(self.confidence),
            "accuracy": floats(self.accuracy),
            "count": [int(c) for c in self.count],
        }


def reliability(probs: np.ndarray, gold: np.ndarray, n_bins: int = 10) -> Reliability:
    """Reliability bins of ``probs`` against ``gold`` class indices.

    ``probs`` of shape ``(n, K)`` are soft labels: each item is binned by its
    top-label confidence (the largest probability), and it is right when its
    argmax is the gold class. ``probs`` of shape ``(n,)`` are the
    probabilities of the positive class 1 of a binary task: each item is
    binned by that probability, and "accuracy" is the observed share of gold
    positives in the bin (the classic binary reliability diagram).
    """
    confidence, hit = _confidence_and_hit(probs, gold)
    return _bins(confidence, hit, n_bins)


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE of soft labels ``probs`` ``(n, K)`` against ``gold`` ``(n,)``.

    ``sum over bins of count/n * |accuracy - mean confidence|`` with
    ``n_bins`` equal-width bins; 0 is perfectly calibrated, at most 1.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise InvalidInput(f"probs must have shape (n, K), not {probs.shape}")
    bins = reliability(probs, gold, n_bins)
    full = bins.count > 0
    gaps = np.abs(bins.accuracy[full] - bins.confidence[full])
    return float((gaps * bins.count[full]).sum() / bins.count.sum())


def _confidence_and_hit(probs: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold)
    if probs.ndim not in (1, 2) or gold.ndim != 1 or len(probs) != len(gold):
        raise InvalidInput(
            f"probs (n,) or (n, K) and gold (n,) must match; got {probs.shape} and {gold.shape}"
        )
    if len(gold) == 0:
        raise InvalidInput("no items to measure calibration on")
    if not np.issubdtype(gold.dtype, np.integer):
        raise InvalidInput(f"gold must hold integer class indices, not {gold.dtype}")
    k = probs.shape[1] if probs.ndim == 2 else 2
    if gold.min() < 0 or gold.max() >= k:
        raise InvalidInput(f"a gold class is outside [0, {k})")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise InvalidInput("probabilities must be finite and within [0, 1]")
    if probs.ndim == 1:
        return probs, (gold == 1).astype(np.float64)
    return probs.max(axis=1), (probs.argmax(axis=1) == gold).astype(np.float64)


def _bins(confidence: np.ndarray, hit: np.ndarray, n_bins: int) -> Reliability:
    if n_bins < 1:
        raise InvalidInput(f"n_bins must be at least 1, not {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins: the index of the first inner edge >= the confidence.
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=n_bins) / count
        accuracy = np.bincount(index, hit, minlength=n_bins) / count
    return Reliability(edges, mean_confidence, accuracy, count.astype(np.int64))
