"""Reliability bins and expected calibration error, by hand and on seeded samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.evaluation.calibration import expected_calibration_error, reliability


def test_ece_by_hand_binary() -> None:
    probs = np.array([[0.85, 0.15], [0.85, 0.15], [0.35, 0.65], [0.55, 0.45]])
    gold = np.array([0, 1, 1, 0])
    # Bins (0.8, 0.9]: conf 0.85, acc 1/2; (0.6, 0.7]: 0.65 vs 1; (0.5, 0.6]: 0.55 vs 1.
    expected = (2 * 0.35 + 0.35 + 0.45) / 4
    assert expected_calibration_error(probs, gold) == pytest.approx(expected)


def test_ece_by_hand_three_classes() -> None:
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    gold = np.array([0, 1])
    # Top labels: 0 with 0.5 (right, gap 0.5) and 2 with 0.6 (wrong, gap 0.6).
    assert expected_calibration_error(probs, gold) == pytest.approx(0.55)


def test_perfectly_calibrated_bin_has_no_error() -> None:
    probs = np.tile([0.25, 0.75], (8, 1))
    gold = np.array([1, 1, 1, 1, 1, 1, 0, 0])  # 6 of 8 right at confidence 0.75
    assert expected_calibration_error(probs, gold) == pytest.approx(0.0)


def test_one_bin_is_the_gap_of_the_means() -> None:
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    gold = np.array([0, 0, 0])
    accuracy, confidence = 2 / 3, (0.9 + 0.7 + 0.6) / 3
    ece = expected_calibration_error(probs, gold, n_bins=1)
    assert ece == pytest.approx(abs(accuracy - confidence))


def test_reliability_of_top_label_confidence() -> None:
    probs = np.array([[0.85, 0.15], [0.85, 0.15], [0.35, 0.65], [0.0, 1.0]])
    gold = np.array([0, 1, 0, 1])
    bins = reliability(probs, gold, n_bins=10)
    assert bins.count.tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 2, 1]
    assert bins.confidence[8] == pytest.approx(0.85)
    assert bins.accuracy[8] == pytest.approx(0.5)
    assert bins.accuracy[6] == 0.0  # 0.65 on class 1, gold 0
    assert bins.accuracy[9] == 1.0 and bins.confidence[9] == 1.0  # 1.0 is in the last bin
    assert np.isnan(bins.confidence[0]) and np.isnan(bins.accuracy[0])
    np.testing.assert_allclose(bins.edges, np.linspace(0, 1, 11))


def test_reliability_of_positive_probabilities() -> None:
    positive = np.array([0.15, 0.15, 0.15, 0.15, 0.95, 0.95, 0.0, 0.5])
    gold = np.array([1, 0, 0, 0, 1, 1, 0, 1])
    bins = reliability(positive, gold, n_bins=10)
    # 0 falls in the first bin, 0.5 in (0.4, 0.5]: bins are right-closed.
    assert bins.count.tolist() == [1, 4, 0, 0, 1, 0, 0, 0, 0, 2]
    assert bins.accuracy[1] == pytest.approx(0.25)  # the share of gold positives
    assert bins.confidence[1] == pytest.approx(0.15)
    assert bins.accuracy[0] == 0.0 and bins.accuracy[4] == 1.0 and bins.accuracy[9] == 1.0


def test_as_dict_is_json_friendly() -> None:
    bins = reliability(np.array([0.15, 0.95]), np.array([0, 1]), n_bins=4)
    data = bins.as_dict()
    json.dumps(data, allow_nan=False)
    assert data["count"] == [1, 0, 0, 1]
    assert data["confidence"][1] is None
    assert data["edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_sampled_calibrated_and_overconfident_predictions() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000)
    gold = (rng.random(p.size) < p).astype(int)  # drawn from the predicted probabilities
    calibrated = np.c_[1 - p, p]
    assert expected_calibration_error(calibrated, gold) < 0.02
    sharp = np.clip((p - 0.5) * 3 + 0.5, 0, 1)  # same ranking, pushed to the extremes
    overconfident = np.c_[1 - sharp, sharp]
    assert expected_calibration_error(overconfident, gold) > 0.1


@pytest.mark.parametrize(
    ("probs", "gold"),
    [
        (np.array([[0.5, 0.5]]), np.array([0, 1])),  # lengths differ
        (np.array([[0.5, 0.5]]), np.array([2])),  # no class 2
        (np.array([[0.5, 0.5]]), np.array([-1])),
        (np.array([[1.5, -0.5]]), np.array([0])),  # not probabilities
        (np.array([[np.nan, 0.5]]), np.array([0])),
        (np.array([[0.5, 0.5]]), np.array([0.0])),  # gold must be class indices
        (np.zeros((0, 2)), np.zeros(0, dtype=int)),  # nothing to measure
        (np.array([0.3]), np.array([0])),  # ECE wants (n, K)
    ],
)
def test_bad_input_is_refused(probs: np.ndarray, gold: np.ndarray) -> None:
    with pytest.raises(InvalidInput):
        expected_calibration_error(probs, gold)


def test_bins_must_be_positive() -> None:
    with pytest.raises(InvalidInput):
        reliability(np.array([0.3]), np.array([0]), n_bins=0)
