"""The served threshold: calibration on dev, the deployment prior baked into the export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mlcycle.contracts.thresholds import DEFAULT_POSITIVE_RATE, ThresholdPolicy
from mlcycle.contracts.training import (
    JobConfig,
    TrialParams,
)
from mlcycle.evaluation.calibration import fit_platt
from mlcycle.evaluation.priors import adjust_binary, estimate_positive_rate, logit, sigmoid
from mlcycle.featurization.sparse import SparseBatch
from mlcycle.trainer import export as exporting
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.fit import fit, predict_probabilities
from mlcycle.trainer.models import PriorCorrected
from mlcycle.trainer.thresholds import choose_threshold, served_threshold, with_test

pytestmark = pytest.mark.unit

DIM = 300
SMALL = TrialParams(hidden_units=16, epochs=4, batch_size=32, learning_rate=0.03, dropout=0.0)


def make_split(n: int, seed: int, *, prior: float, classes: int = 2) -> SplitData:
    """Rows of random columns; class k > 0 also holds one of its five marker columns, noisily."""
    rng = np.random.default_rng(seed)
    indptr, indices, labels = [0], [], []
    for _ in range(n):
        k = int(rng.random() < prior) if classes == 2 else int(rng.integers(0, classes))
        cols = set(rng.choice(np.arange(25, DIM), size=int(rng.integers(3, 9)), replace=False))
        # A marker for the row's class most of the time, another class's some of the time,
        # so the classes overlap and the scores are not all 0 or 1.
        marked = k if rng.random() < 0.8 else int(rng.integers(0, classes))
        if marked > 0:
            cols.add(int(5 * (marked - 1) + rng.integers(0, 5)))
        row = sorted(int(c) for c in cols)
        indices.extend(row)
        indptr.append(len(indices))
        labels.append(k)
    batch = SparseBatch(
        indptr=np.array(indptr, np.int64),
        indices=np.array(indices, np.int32),
        values=np.ones(len(indices), np.float32),
        dim=DIM,
        truncated=np.zeros(n, bool),
    )
    return SplitData.from_batch(batch, np.array(labels), n_classes=classes)


def make_data(prior: float = 0.8, classes: int = 2) -> TrainingData:
    """A corpus rich in positives, like one sampled by a slur lexicon."""
    return TrainingData(
        train=make_split(600, 1, prior=prior, classes=classes),
        dev=make_split(300, 2, prior=prior, classes=classes),
        test=make_split(300, 3, prior=prior, classes=classes),
        n_classes=classes,
        transform="tf-test",
        label_run="lr-test",
        task="toxicity",
    )


@pytest.fixture(scope="module")
def trained() -> tuple[TrainingData, object]:
    data = make_data()
    return data, fit(SMALL, data)


def test_the_policy_defaults_to_a_deployment_prior_and_checks_its_fields() -> None:
    policy = JobConfig().threshold_policy
    assert policy.positive_rate == DEFAULT_POSITIVE_RATE == 0.1
    assert policy.cost_ratio == 1.0
    for bad in ({"positive_rate": 0.0}, {"positive_rate": 1.0}, {"cost_ratio": 0}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            JobConfig(threshold_policy=bad)
    with pytest.raises(ValidationError, match="extra"):
        ThresholdPolicy(prior=0.1)


def test_the_served_score_is_the_calibrated_probability_under_the_deployment_prior(
    trained: tuple[TrainingData, object], tmp_path: Path
) -> None:
    data, best = trained
    labels = data.dev.labels
    chosen = choose_threshold(best, data, ThresholdPolicy(positive_rate=0.1, cost_ratio=1.0))
    summary = chosen.threshold
    assert summary["applied"] and summary["threshold"] == served_threshold(chosen) == 0.5
    assert summary["deployment_prior"] == 0.1
    assert summary["dev_prior"] == pytest.approx(labels.mean())
    assert summary["calibration"]["fitted_on"] == "dev"
    assert isinstance(chosen.model, PriorCorrected)

    # The library's answer for the same rows: Platt on dev, then the prior moved.
    raw = predict_probabilities(best.model, data.dev)[:, 1]
    platt = fit_platt(np.asarray(logit(raw)), labels)
    calibrated = np.asarray(sigmoid(platt.logits(logit(raw))))
    expected = adjust_binary(calibrated, float(labels.mean()), 0.1)
    assert np.allclose(chosen.dev_probabilities[:, 1], expected, atol=1e-4)

    exporting.export_saved_model(chosen.model, tmp_path / "1")
    served = exporting.ServingModel(tmp_path / "1")
    indices, values = data.dev.flat_rows(np.arange(len(data.dev))).padded()
    out = served._signature(indices=indices, values=values)
    assert np.allclose(out["scores"].numpy(), expected, atol=1e-4)
    assert np.allclose(out["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)
    # Moving a corpus rich in positives to mostly benign traffic flags far fewer rows.
    assert (expected >= 0.5).mean() < (raw >= 0.5).mean()

    # What the threshold implies at the stated prior, from dev's class-conditional rates.
    dev = summary["implied"]["dev"]
    flagged = expected >= 0.5
    tpr, fpr = flagged[labels == 1].mean(), flagged[labels == 0].mean()
    assert (dev["tpr"], dev["fpr"]) == pytest.approx((tpr, fpr))
    assert dev["precision"] == pytest.approx(0.1 * tpr / (0.1 * tpr + 0.9 * fpr))
    assert summary["instead"]["rule"] == "dev best F1"

    # The EM on the served scores of dev's rows finds dev's own prior again.
    found = estimate_positive_rate(out["scores"].numpy(), summary["score_prior"])
    assert found.positive_rate == pytest.approx(labels.mean(), abs=0.05)

    # Test is scored afterwards for the record; it does not change the threshold.
    test_probs = predict_probabilities(chosen.model, data.test)
    recorded = with_test(summary, test_probs, data.test.labels)
    assert recorded["threshold"] == summary["threshold"]
    assert set(recorded["implied"]) == {"dev", "test"}


def test_the_cost_ratio_sets_the_threshold_and_a_missing_prior_keeps_devs(
    trained: tuple[TrainingData, object],
) -> None:
    data, best = trained
    chosen = choose_threshold(best, data, ThresholdPolicy(positive_rate=None, cost_ratio=4.0))
    summary = chosen.threshold
    assert summary["threshold"] == pytest.approx(0.8)
    assert summary["deployment_prior"] == pytest.approx(data.dev.labels.mean())
    assert summary["deployment_prior_source"] == "dev"
    # At dev's own prior the corrected scores are merely calibrated: their mean is dev's rate.
    assert chosen.dev_probabilities[:, 1].mean() == pytest.approx(data.dev.labels.mean(), abs=0.01)


def test_a_multi_class_model_keeps_its_scores() -> None:
    data = make_data(classes=3)
    best = fit(SMALL.model_copy(update={"epochs": 1}), data)
    chosen = choose_threshold(best, data, ThresholdPolicy())
    assert chosen.model is best.model
    assert chosen.threshold["applied"] is False and chosen.threshold["threshold"] is None
    assert "3 classes" in chosen.threshold["reason"]
