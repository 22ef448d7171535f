"""Model evaluation: metrics by hand and against sklearn, calibration, slices, curves, errors."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mlcycle.common.errors import InvalidInput
from mlcycle.evaluation.classification import (
    MAX_SLICES_PER_FIELD,
    METRICS,
    Evaluation,
    evaluate,
)
from mlcycle.evaluation.curves import curves


def binary(p1: list[float] | np.ndarray) -> np.ndarray:
    p1 = np.asarray(p1, dtype=float)
    return np.column_stack([1 - p1, p1])


def noisy_binary(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 2, n)
    p1 = np.clip(0.3 * labels + 0.35 + rng.normal(0, 0.15, n), 0.01, 0.99)
    return binary(p1), labels


def test_perfect_classifier() -> None:
    labels = np.array([0, 1] * 20)
    probs = binary(np.where(labels == 1, 0.99, 0.01))
    result = evaluate(probs, labels, ("clean", "toxic"))
    assert result.roc_auc == 1.0
    assert result.pr_auc == 1.0
    assert result.accuracy == 1.0
    assert result.macro_f1 == result.weighted_f1 == 1.0
    assert result.recall == {"clean": 1.0, "toxic": 1.0}
    assert result.confusion == [[20, 0], [0, 20]]
    # Every row at confidence 0.99 and right: ECE is the 0.01 gap, log loss -log(0.99).
    assert result.ece == pytest.approx(0.01)
    assert result.log_loss == pytest.approx(-math.log(0.99))
    assert result.metric("roc_auc") == 1.0


def test_inverted_scores_rank_everything_wrong() -> None:
    labels = np.array([0, 1] * 20)
    probs = binary(np.where(labels == 1, 0.1, 0.9))
    result = evaluate(probs, labels)
    assert result.roc_auc == 0.0
    assert result.accuracy == 0.0
    assert result.confusion == [[0, 20], [20, 0]]
    assert result.ece == pytest.approx(0.9)


def test_small_case_by_hand() -> None:
    probs = binary([0.9, 0.6, 0.4, 0.2, 0.7])
    labels = np.array([1, 0, 1, 0, 1])
    result = evaluate(probs, labels, ["clean", "toxic"])
    # Predicted at 0.5: [1, 1, 0, 0, 1].
    assert result.threshold == 0.5
    assert result.confusion == [[1, 1], [1, 2]]
    assert result.accuracy == pytest.approx(3 / 5)
    assert result.precision == pytest.approx({"clean": 1 / 2, "toxic": 2 / 3})
    assert result.recall == pytest.approx({"clean": 1 / 2, "toxic": 2 / 3})
    assert result.macro_f1 == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result.weighted_f1 == pytest.approx((2 * 1 / 2 + 3 * 2 / 3) / 5)
    # 5 of the 6 (positive, negative) pairs are ordered right (0.4 < 0.6 is not).
    assert result.roc_auc == pytest.approx(5 / 6)
    assert result.log_loss == pytest.approx(-np.log([0.9, 0.4, 0.4, 0.8, 0.7]).mean())
    # Thresholds 0.2, 0.4, 0.6, 0.7, 0.9 give positive F1 3/4, 6/7, 2/3, 4/5, 1/2.
    assert result.best_threshold == pytest.approx(0.4)
    assert result.best_f1 == pytest.approx(6 / 7)

    stricter = evaluate(probs, labels, threshold=0.65)
    assert stricter.threshold == 0.65
    assert stricter.confusion == [[2, 0], [1, 2]]
    assert stricter.accuracy == pytest.approx(4 / 5)
    assert stricter.roc_auc == result.roc_auc  # ranking metrics ignore the threshold


def test_best_threshold_recovers_the_separating_score() -> None:
    rng = np.random.RandomState(1)
    labels = rng.randint(0, 2, 200)
    p1 = np.where(labels == 1, rng.uniform(0.45, 0.95, 200), rng.uniform(0.05, 0.35, 200))
    result = evaluate(binary(p1), labels)
    assert result.best_f1 == pytest.approx(1.0)
    assert result.best_threshold == pytest.approx(p1[labels == 1].min())
    # At the default 0.5 some positives are missed; at the best threshold none is.
    assert result.accuracy < 1.0
    assert evaluate(binary(p1), labels, threshold=result.best_threshold).accuracy == 1.0


def test_best_threshold_prefers_the_lowest_of_equally_good_ones() -> None:
    # Thresholds 0.3 (P 1/2, R 1) and 0.9 (P 1, R 1/2) both give F1 2/3.
    result = evaluate(binary([0.1, 0.3, 0.5, 0.7, 0.9]), np.array([0, 1, 0, 0, 1]))
    assert result.best_threshold == pytest.approx(0.3)
    assert result.best_f1 == pytest.approx(2 / 3)


def test_ece_uses_fifteen_equal_width_bins_by_default() -> None:
    probs = binary([0.62, 0.68])
    labels = np.array([1, 0])  # the first row is right, the second wrong
    # 15 bins split 0.62 and 0.68 (edge at 2/3): gaps 0.38 and 0.68.
    assert evaluate(probs, labels).ece == pytest.approx((0.38 + 0.68) / 2)
    # 10 bins pool them in (0.6, 0.7]: confidence 0.65, accuracy 1/2.
    assert evaluate(probs, labels, ece_bins=10).ece == pytest.approx(0.15)


def test_ece_near_zero_when_calibrated_and_large_when_overconfident() -> None:
    rng = np.random.RandomState(2)
    n = 20_000
    p1 = rng.uniform(0, 1, n)
    calibrated_labels = (rng.uniform(0, 1, n) < p1).astype(int)
    assert evaluate(binary(p1), calibrated_labels).ece < 0.02

    # Always 0.99 sure of class 1, right only 60% of the time.
    labels = (rng.uniform(0, 1, n) < 0.6).astype(int)
    overconfident = evaluate(binary(np.full(n, 0.99)), labels)
    assert overconfident.ece == pytest.approx(0.99 - labels.mean())
    assert overconfident.ece > 0.35
    assert overconfident.metric("ece") == overconfident.ece


def test_multiclass_matches_sklearn_macro_one_vs_rest() -> None:
    rng = np.random.RandomState(3)
    labels = rng.randint(0, 3, 300)
    probs = rng.dirichlet([1, 1, 1], 300)
    probs[np.arange(300), labels] += 0.5  # some signal
    probs /= probs.sum(axis=1, keepdims=True)
    result = evaluate(probs, labels, ["clean", "toxic", "severe"], threshold=0.9)
    assert result.n_classes == 3
    assert result.roc_auc == pytest.approx(
        roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    )
    assert result.pr_auc == pytest.approx(
        np.mean([average_precision_score(labels == k, probs[:, k]) for k in range(3)])
    )
    # Multi-class predicts the argmax whatever the threshold, and has no best threshold.
    predicted = probs.argmax(axis=1)
    assert result.accuracy == pytest.approx((predicted == labels).mean())
    assert result.threshold == 0.5
    assert result.best_threshold is None and result.best_f1 is None
    assert np.array(result.confusion).sum() == 300
    assert np.trace(np.array(result.confusion)) == (predicted == labels).sum()


def test_multiclass_auc_averages_over_the_classes_present() -> None:
    rng = np.random.RandomState(4)
    labels = rng.randint(0, 2, 100)  # class 2 never occurs
    probs = rng.dirichlet([1, 1, 1], 100)
    result = evaluate(probs, labels)
    expected = np.mean([roc_auc_score(labels == k, probs[:, k]) for k in (0, 1)])
    assert result.roc_auc == pytest.approx(expected)
    assert result.recall["2"] == 0.0


def test_single_class_leaves_aucs_undefined() -> None:
    probs = binary([0.2, 0.7, 0.4])
    result = evaluate(probs, np.array([1, 1, 1]))
    assert result.roc_auc is None and result.pr_auc is None
    assert result.accuracy == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="roc_auc is undefined.*single class"):
        result.metric("roc_auc")
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        result.metric("auc")
    assert evaluate(probs, np.array([0, 0, 0])).best_threshold is None


def test_slices_are_computed_per_value_and_small_ones_dropped() -> None:
    probs, labels = noisy_binary(100, seed=5)
    language = ["en"] * 45 + ["de"] * 30 + ["fr"] * 5 + [None] * 12 + [float("nan")] * 8
    labels[75:80] = 1  # "fr" is one class only, but too small to show anyway
    result = evaluate(probs, labels, slices={"language": language}, min_slice_size=20)
    by_language = result.slices["language"]
    assert list(by_language) == ["en", "de", "(none)"]  # largest first; "fr" (5) dropped
    for value, rows in (("en", slice(0, 45)), ("de", slice(45, 75)), ("(none)", slice(80, 100))):
        alone = evaluate(probs[rows], labels[rows])
        assert by_language[value] == pytest.approx(
            {
                "n": alone.n,
                "accuracy": alone.accuracy,
                "roc_auc": alone.roc_auc,
                "weighted_f1": alone.weighted_f1,
                "positive_rate": labels[rows].mean(),
            }
        )


def test_slice_of_one_class_has_no_auc_and_values_are_stringified() -> None:
    probs, labels = noisy_binary(60, seed=6)
    labels[:30] = 0
    result = evaluate(probs, labels, slices={"source": [7] * 30 + [8] * 30}, min_slice_size=10)
    assert result.slices["source"]["7"]["roc_auc"] is None
    assert result.slices["source"]["7"]["positive_rate"] == 0.0
    assert result.slices["source"]["8"]["roc_auc"] is not None


def test_at_most_the_largest_slices_per_field_are_kept() -> None:
    sizes = {f"v{i:02d}": 20 + i for i in range(MAX_SLICES_PER_FIELD + 5)}
    values = [value for value, size in sizes.items() for _ in range(size)]
    probs, labels = noisy_binary(len(values), seed=7)
    result = evaluate(probs, labels, slices={"user": values})
    kept = result.slices["user"]
    assert len(kept) == MAX_SLICES_PER_FIELD
    assert set(kept) == {f"v{i:02d}" for i in range(5, MAX_SLICES_PER_FIELD + 5)}
    assert [s["n"] for s in kept.values()] == sorted((s["n"] for s in kept.values()), reverse=True)


def test_to_dict_is_json_ready_and_complete() -> None:
    probs, labels = noisy_binary(80, seed=8)
    result = evaluate(probs, labels, ["clean", "toxic"], slices={"lang": ["en", "de"] * 40})
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(data) == {f.name for f in fields(Evaluation)}
    assert data["class_names"] == ["clean", "toxic"]
    assert data["slices"]["lang"]["en"]["n"] == 40
    assert Evaluation(**{**data, "class_names": tuple(data["class_names"])}) == result
    for name in METRICS:
        assert result.metric(name) == data[name]


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.array([0.2, 0.8]), np.array([0, 1]), r"shape \(n, K\)"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "no rows"),
        (np.ones((3, 1)), np.array([0, 0, 0]), "at least 2 class columns"),
        (binary([0.1, 0.2, 0.3]), np.array([0, 1]), r"labels must have shape \(3,\)"),
        (binary([0.1, 0.2, 0.3]), np.array([0, 2, 1]), r"in \[0, 2\).*first: 2 at row 1"),
        (binary([0.1, 0.2, 0.3]), np.array([0, -1, 1]), r"first: -1 at row 1"),
        (binary([0.1, np.nan, 0.3]), np.array([0, 1, 1]), "NaN or infinite.*row 1"),
        (binary([0.1, 0.2]) * 3, np.array([0, 1]), r"must lie in \[0, 1\].*logits"),
        (np.array([[0.5, 0.4], [0.5, 0.5]]), np.array([0, 1]), "sum to 1; row 0 sums to 0.9"),
        (binary([0.1, 0.2]), np.array([0.0, 0.5]), "integer class indices"),
    ],
)
def test_invalid_input_says_what_is_wrong(
    probs: np.ndarray, labels: np.ndarray, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        evaluate(probs, labels)
    with pytest.raises(InvalidInput, match=message):
        curves(probs, labels)


def test_invalid_options_are_refused() -> None:
    probs, labels = noisy_binary(10)
    with pytest.raises(InvalidInput, match="3 class names given for 2"):
        evaluate(probs, labels, ["a", "b", "c"])
    with pytest.raises(InvalidInput, match="threshold"):
        evaluate(probs, labels, threshold=1.5)
    with pytest.raises(InvalidInput, match="slice field 'lang' has 3 values for 10 rows"):
        evaluate(probs, labels, slices={"lang": ["en"] * 3})


def test_float_labels_and_float32_rows_are_accepted() -> None:
    probs = binary([0.1, 0.8, 0.6]).astype(np.float32)
    result = evaluate(probs, np.array([0.0, 1.0, 0.0]))
    assert result.accuracy == pytest.approx(2 / 3)


def test_curves_binary_are_thinned_and_keep_their_endpoints() -> None:
    probs, labels = noisy_binary(2_000, seed=9)
    full = curves(probs, labels, max_points=10_000)
    thin = curves(probs, labels, max_points=50)
    assert len(full.roc_fpr) > 50
    assert len(thin.roc_fpr) <= 50 and len(thin.pr_recall) <= 50
    assert (thin.roc_fpr[0], thin.roc_tpr[0]) == (full.roc_fpr[0], full.roc_tpr[0]) == (0.0, 0.0)
    assert (thin.roc_fpr[-1], thin.roc_tpr[-1]) == (1.0, 1.0)
    assert (thin.pr_recall[0], thin.pr_recall[-1]) == (full.pr_recall[0], full.pr_recall[-1])
    assert sum(thin.calibration_count) == 2_000
    assert all(c > 0 for c in thin.calibration_count)
    assert len(thin.calibration_confidence) == len(thin.calibration_accuracy) <= 15
    json.dumps(thin.__dict__)


def test_curves_of_a_perfect_and_a_multiclass_model() -> None:
    labels = np.array([0, 1] * 10)
    perfect = curves(binary(np.where(labels == 1, 0.9, 0.1)), labels)
    assert (0.0, 1.0) in zip(perfect.roc_fpr, perfect.roc_tpr, strict=True)
    assert perfect.calibration_confidence == pytest.approx([0.9])
    assert perfect.calibration_accuracy == [1.0]

    rng = np.random.RandomState(10)
    labels = rng.randint(0, 3, 100)
    three = curves(rng.dirichlet([1, 1, 1], 100), labels, bins=5)
    assert three.roc_fpr[-1] == three.roc_tpr[-1] == 1.0
    assert len(three.calibration_count) <= 5 and sum(three.calibration_count) == 100

    one_class = curves(binary([0.2, 0.7]), np.array([1, 1]))
    assert one_class.roc_fpr == [] and one_class.pr_recall == []
