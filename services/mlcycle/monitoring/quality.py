"""A model version's quality at its served threshold: realized from moderators' decisions,
estimated from the scores alone before any decision arrives (confidence-based performance
estimation, CBPE).

Realized figures (:func:`realized`) come from joined (score, label, threshold) pairs:
precision, recall and F1 of the positive class at the served threshold (a score at or above
it is flagged), the ROC-AUC of the scores (``None`` when the labels hold one class), the
expected calibration error of :mod:`mlcycle.evaluation.calibration`, and the label lag
(decision time minus score time, never below 0).

Estimated figures. A served score ``s`` is a probability of the positive class under the
deployment prior; the profile's :class:`~mlcycle.contracts.monitoring.CalibrationBins` say
how far that held on dev: ``p(s)`` is the dev positive share of the bin ``s`` falls in,
interpolated between the centres of the non-empty bins (the score itself when its bin is
empty, or without calibration). Each scored comment then contributes
its expected share of every confusion-matrix cell, and of the positive and negative score
distributions. :func:`add_estimate_counters` adds those sums to a
:class:`~mlcycle.monitoring.tally.Tally`; they are additive, so processes and windows add
theirs. Counter names:

- ``cbpe:n``: scored comments;
- ``cbpe:tp`` / ``cbpe:fp``: Σ p and Σ (1 - p) over flagged comments (score >= threshold);
- ``cbpe:fn`` / ``cbpe:tn``: Σ p and Σ (1 - p) over the others;
- ``cbpe:pos:<b>`` / ``cbpe:neg:<b>``: Σ p and Σ (1 - p) per score bin ``b`` of
  :data:`AUC_BINS` equal-width bins of the score's logit over
  [-:data:`AUC_LOGIT_SPAN`, +:data:`AUC_LOGIT_SPAN`] (the outer bins take the rest).

:func:`estimate` reads them back: precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``,
F1 ``2TP / (2TP + FP + FN)``, and the ROC-AUC of the expected positive and negative score
histograms (two comments in one bin count half, as ties do).

Limits, as for every CBPE: the estimate is as good as ``p(s)``. It is close when the live
scores are calibrated as on dev (the same prior and the same score-to-outcome relation);
under concept drift (the same scores, other outcomes) or a prior the calibration was not
moved to, it is biased, and nothing in the scores says so: that is what the realized figures,
and the estimate's error beside them, are for. The AUC estimate also loses the order inside
a bin (1/16 of a logit wide), and ``p(s)`` is flat beyond the outer bins' centres: scores
piled up at 0 or 1 tie there, so coarse calibration bins blur the AUC estimate (by a few
hundredths for overconfident scores in 20 equal-width bins, see the tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlcycle.contracts.monitoring import CalibrationBins, QualityFigures
from mlcycle.evaluation.calibration import expected_calibration_error
from mlcycle.monitoring.tally import Tally

PREFIX = "cbpe"
AUC_BINS = 512
AUC_LOGIT_SPAN = 16.0
# Bins of the realized expected calibration error.
ECE_BINS = 10
_EPS = 1e-12


# -- realized --------------------------------------------------------------------------------


def realized(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    thresholds: Sequence[float] | np.ndarray | float,
) -> QualityFigures:
    """Quality of ``scores`` against moderators' ``labels`` (class indices; not 0 = positive)
    at the served ``thresholds`` (one per score, or one for all)."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, np.int64) != 0
    t = np.broadcast_to(np.asarray(thresholds, np.float64), s.shape)
    n = len(s)
    if n == 0:
        return QualityFigures(comments=0, precision=None, recall=None, f1=None, roc_auc=None)
    flagged = s >= t
    tp = float(np.sum(flagged & y))
    fp = float(np.sum(flagged & ~y))
    fn = float(np.sum(~flagged & y))
    probs = np.clip(np.stack([1.0 - s, s], axis=1), 0.0, 1.0)
    return QualityFigures(
        comments=n,
        **_confusion_figures(tp, fp, fn),
        roc_auc=rank_auc(s, y),
        accuracy=float(np.mean(flagged == y)),
        calibration_error=expected_calibration_error(probs, y.astype(np.int64), ECE_BINS),
    )


def rank_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC-AUC by the Mann-Whitney rank sum (ties share their mean rank); None for one class."""
    positive = np.asarray(positive, bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ordered = np.asarray(scores)[order]
    # Mean rank (1-based) of each run of equal scores.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    mean_ranks = (starts + ends + 1) / 2.0
    ranks = np.empty(len(ordered), np.float64)
    ranks[order] = np.repeat(mean_ranks, ends - starts)
    rank_sum = float(ranks[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def label_lag(lags_s: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50, p90 and max of decision-minus-score times in seconds ({} when there are none)."""
    lags = np.maximum(np.asarray(lags_s, np.float64), 0.0)
    if len(lags) == 0:
        return {}
    return {
        "p50": float(np.percentile(lags, 50)),
        "p90": float(np.percentile(lags, 90)),
        "max": float(lags.max()),
    }


# -- estimated (CBPE) -------------------------------------------------------------------------


def positive_probability(
    scores: Sequence[float] | np.ndarray, calibration: CalibrationBins | None
) -> np.ndarray:
    """Each served score's probability of a positive outcome, read from the dev calibration."""
    s = np.clip(np.asarray(scores, np.float64), 0.0, 1.0)
    if calibration is None:
        return s
    edges = np.asarray(calibration.edges, np.float64)
    rates = np.array([np.nan if r is None else r for r in calibration.positive_rate], np.float64)
    known = ~np.isnan(rates)
    if len(rates) != len(edges) - 1 or not known.any():
        return s
    bins = np.minimum(np.searchsorted(edges[1:-1], s, side="right"), len(rates) - 1)
    # Between the centres of the non-empty bins the share is interpolated, so scores keep
    # their order inside a bin (a step function would tie them, and blur the AUC estimate).
    centres = (edges[:-1] + edges[1:]) / 2
    p = np.interp(s, centres[known], rates[known])
    return np.where(known[bins], np.clip(p, 0.0, 1.0), s)


def auc_bin(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """The AUC histogram's bin of each score (equal width in logit space)."""
    s = np.clip(np.asarray(scores, np.float64), _EPS, 1.0 - _EPS)
    logit = np.log(s) - np.log1p(-s)
    scaled = (logit + AUC_LOGIT_SPAN) / (2 * AUC_LOGIT_SPAN) * AUC_BINS
    return np.clip(np.floor(scaled), 0, AUC_BINS - 1).astype(np.int64)


def add_estimate_counters(
    tally: Tally,
    scores: Sequence[float] | np.ndarray,
    threshold: float,
    calibration: CalibrationBins | None,
) -> None:
    """Add the ``cbpe:*`` sums of ``scores`` (served at ``threshold``) to ``tally``."""
    s = np.asarray(scores, np.float64)
    if len(s) == 0:
        return
    p = positive_probability(s, calibration)
    flagged = s >= threshold
    tally.bump(f"{PREFIX}:n", float(len(s)))
    tally.bump(f"{PREFIX}:tp", float(p[flagged].sum()))
    tally.bump(f"{PREFIX}:fp", float((1.0 - p[flagged]).sum()))
    tally.bump(f"{PREFIX}:fn", float(p[~flagged].sum()))
    tally.bump(f"{PREFIX}:tn", float((1.0 - p[~flagged]).sum()))
    bins = auc_bin(s)
    tally.bump_vector(f"{PREFIX}:pos", np.bincount(bins, weights=p, minlength=AUC_BINS))
    tally.bump_vector(f"{PREFIX}:neg", np.bincount(bins, weights=1.0 - p, minlength=AUC_BINS))


def estimate_counters(
    scores: Sequence[float] | np.ndarray, threshold: float, calibration: CalibrationBins | None
) -> dict[str, float]:
    """The ``cbpe:*`` counters of ``scores`` alone (e.g. to add to a shared store)."""
    tally = Tally()
    add_estimate_counters(tally, scores, threshold, calibration)
    return tally.counts


def estimate(tally: Tally) -> QualityFigures | None:
    """The figures the ``cbpe:*`` counters of ``tally`` expect; None when it has none."""
    counts = tally.counts
    n = int(counts.get(f"{PREFIX}:n", 0))
    if n == 0:
        return None
    tp, fp, fn = (counts.get(f"{PREFIX}:{cell}", 0.0) for cell in ("tp", "fp", "fn"))
    pos = tally.vector(f"{PREFIX}:pos", AUC_BINS)
    neg = tally.vector(f"{PREFIX}:neg", AUC_BINS)
    return QualityFigures(
        comments=n, **_confusion_figures(tp, fp, fn), roc_auc=_binned_auc(pos, neg)
    )


def _binned_auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """P(a positive's score > a negative's), ties half, from per-bin masses."""
    total_pos, total_neg = float(pos.sum()), float(neg.sum())
    if total_pos <= _EPS or total_neg <= _EPS:
        return None
    negatives_below = np.cumsum(neg) - neg
    wins = float(np.sum(pos * (negatives_below + 0.5 * neg)))
    return wins / (total_pos * total_neg)


def _confusion_figures(tp: float, fp: float, fn: float) -> dict[str, float | None]:
    precision = tp / (tp + fp) if tp + fp > _EPS else None
    recall = tp / (tp + fn) if tp + fn > _EPS else None
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > _EPS else None
    return {"precision": precision, "recall": recall, "f1": f1}


def estimate_error(
    estimated: QualityFigures | None, realized_figures: QualityFigures | None
) -> dict[str, float]:
    """|estimated - realized| per figure both have."""
    if estimated is None or realized_figures is None:
        return {}
    out: dict[str, float] = {}
    for name in ("precision", "recall", "f1", "roc_auc"):
        a, b = getattr(estimated, name), getattr(realized_figures, name)
        if a is not None and b is not None:
            out[name] = abs(a - b)
    return out
