"""Points of a classifier's ROC, precision-recall and reliability plots.

Binary tasks plot the positive class; multi-class tasks are micro-averaged
one-vs-rest (every (row, class) pair is one binary decision). Curves are
thinned evenly along their points (endpoints kept), so a report over a
million rows still embeds small plots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from mlcycle.common.errors import InvalidInput
from mlcycle.evaluation.calibration import reliability
from mlcycle.evaluation.classification import checked_probabilities


@dataclass(frozen=True)
class Curves:
    """Points of the report's plots.

    Binary: the positive class. Multi-class: micro-averaged one-vs-rest (every
    (row, class) pair is one binary decision). ROC and PR lists are empty when
    the binary labels hold a single class; calibration lists have one entry per
    non-empty bin.
    """

    roc_fpr: list[float]
    roc_tpr: list[float]
    pr_recall: list[float]
    pr_precision: list[float]
    calibration_confidence: list[float]
    calibration_accuracy: list[float]
    calibration_count: list[int]


def curves(
    probabilities: np.ndarray, labels: np.ndarray, *, bins: int = 15, max_points: int = 400
) -> Curves:
    """ROC, precision-recall and reliability points, each curve at most ``max_points`` long.

    Curves are thinned evenly along their points (endpoints kept), so a report
    over a million rows still embeds small plots.
    """
    probs, y = checked_probabilities(probabilities, labels)
    if bins < 1:
        raise InvalidInput(f"bins must be at least 1, not {bins}")
    if max_points < 2:
        raise InvalidInput(f"max_points must be at least 2, not {max_points}")
    if probs.shape[1] == 2:
        target, score = y == 1, probs[:, 1]
    else:
        target = (y[:, None] == np.arange(probs.shape[1])[None, :]).ravel()
        score = probs.ravel()
    roc_fpr: list[float] = []
    roc_tpr: list[float] = []
    pr_recall: list[float] = []
    pr_precision: list[float] = []
    if target.any() and not target.all():
        fpr, tpr, _ = roc_curve(target, score)
        roc_fpr, roc_tpr = _thin(fpr, tpr, max_points)
        precision, recall, _ = precision_recall_curve(target, score)
        pr_recall, pr_precision = _thin(recall, precision, max_points)
    bins_ = reliability(probs, y, bins)
    full = bins_.count > 0
    return Curves(
        roc_fpr=roc_fpr,
        roc_tpr=roc_tpr,
        pr_recall=pr_recall,
        pr_precision=pr_precision,
        calibration_confidence=bins_.confidence[full].tolist(),
        calibration_accuracy=bins_.accuracy[full].tolist(),
        calibration_count=bins_.count[full].tolist(),
    )


def _thin(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[list[float], list[float]]:
    if len(x) > max_points:
        index = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(np.int64))
        x, y = x[index], y[index]
    return x.astype(float).tolist(), y.astype(float).tolist()
