"""Live quality: realized figures from decisions, and the CBPE estimate before them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from mlcycle.contracts.monitoring import CalibrationBins
from mlcycle.monitoring import quality
from mlcycle.monitoring.tally import Tally


def calibrated(n: int, seed: int, prior: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Scores that are calibrated probabilities, and labels drawn from them."""
    rng = np.random.default_rng(seed)
    y_latent = rng.random(n) < prior
    logits = rng.normal(np.where(y_latent, 1.5, -1.5), 1.2)
    # The posterior of this two-Gaussian mixture is a calibrated score.
    log_odds = np.log(prior / (1 - prior)) + (3.0 / 1.44) * logits
    scores = 1.0 / (1.0 + np.exp(-log_odds))
    labels = (rng.random(n) < scores).astype(np.int64)
    return scores, labels


def test_realized_matches_scikit_learn() -> None:
    scores, labels = calibrated(3000, 1)
    scores = np.round(scores, 2)  # ties, to check the mean ranks
    figures = quality.realized(scores, labels, 0.4)
    flagged = scores >= 0.4
    assert figures.comments == 3000
    assert figures.precision == pytest.approx(precision_score(labels, flagged))
    assert figures.recall == pytest.approx(recall_score(labels, flagged))
    assert figures.f1 == pytest.approx(f1_score(labels, flagged))
    assert figures.roc_auc == pytest.approx(roc_auc_score(labels, scores))
    assert figures.calibration_error is not None and figures.calibration_error < 0.05


def test_realized_edge_cases() -> None:
    empty = quality.realized([], [], 0.5)
    assert empty.comments == 0 and empty.precision is None and empty.roc_auc is None
    one_class = quality.realized([0.2, 0.9], [0, 0], 0.5)
    assert one_class.roc_auc is None  # undefined, not 0.5
    assert one_class.precision == 0.0 and one_class.recall is None


def test_label_lag_quantiles() -> None:
    lag = quality.label_lag([10.0, 20.0, 30.0, -5.0])
    assert lag["max"] == 30.0 and lag["p50"] == pytest.approx(15.0)
    assert quality.label_lag([]) == {}


def test_estimate_close_to_realized_on_calibrated_scores() -> None:
    tally = Tally()
    errors = []
    for seed in range(5):
        scores, labels = calibrated(2000, seed + 10)
        window = Tally()
        quality.add_estimate_counters(window, scores, 0.5, None)
        estimated = quality.estimate(window)
        real = quality.realized(scores, labels, 0.5)
        assert estimated is not None and estimated.comments == 2000
        errors.append(quality.estimate_error(estimated, real))
        tally.add(window)
    for name in ("precision", "recall", "f1", "roc_auc"):
        assert np.mean([e[name] for e in errors]) < 0.03, name
    # The counters add up: the sum of windows estimates the whole.
    assert quality.estimate(tally).comments == 10_000  # type: ignore[union-attr]


def test_estimate_reads_the_calibration_bins() -> None:
    """Overconfident scores: the dev calibration corrects them, the raw scores do not."""
    scores, labels = calibrated(20_000, 3)
    logit = np.log(scores / (1 - scores))
    served = 1.0 / (1.0 + np.exp(-2.0 * logit))  # the model got overconfident
    edges = np.linspace(0.0, 1.0, 21)
    inner = edges[1:-1]
    bins = np.searchsorted(inner, served, side="right")
    counts = np.bincount(bins, minlength=20)
    positives = np.bincount(bins, weights=labels, minlength=20)
    rates = [float(p / c) if c else None for p, c in zip(positives, counts, strict=True)]
    calibration = CalibrationBins(edges=edges.tolist(), counts=counts.tolist(), positive_rate=rates)
    real = quality.realized(served, labels, 0.5)
    raw, fixed = Tally(), Tally()
    quality.add_estimate_counters(raw, served, 0.5, None)
    quality.add_estimate_counters(fixed, served, 0.5, calibration)
    raw_error = quality.estimate_error(quality.estimate(raw), real)
    fixed_error = quality.estimate_error(quality.estimate(fixed), real)
    assert fixed_error["precision"] < 0.02 and fixed_error["recall"] < 0.03
    # Miscalibrated scores taken at face value say less well what happened.
    assert raw_error["precision"] > 2 * fixed_error["precision"]
    # The AUC estimate is blurred by the bins' resolution either way (the documented limit).
    assert fixed_error["roc_auc"] < 0.05


def test_estimate_under_concept_drift_is_blind() -> None:
    """Same scores, other outcomes: the estimate cannot know (the documented limit)."""
    scores, _ = calibrated(5000, 4)
    rng = np.random.default_rng(5)
    drifted = (rng.random(5000) < 0.5 * scores).astype(np.int64)  # half the toxicity it was
    tally = Tally()
    quality.add_estimate_counters(tally, scores, 0.5, None)
    error = quality.estimate_error(quality.estimate(tally), quality.realized(scores, drifted, 0.5))
    assert error["precision"] > 0.2


def test_empty_bin_falls_back_to_the_score() -> None:
    calibration = CalibrationBins(edges=[0.0, 0.5, 1.0], counts=[10, 0], positive_rate=[0.1, None])
    p = quality.positive_probability([0.2, 0.7], calibration)
    assert p.tolist() == pytest.approx([0.1, 0.7])
    assert quality.estimate(Tally()) is None
