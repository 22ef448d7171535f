"""The live positive rate's window and estimate, without a server."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlcycle.evaluation.priors import estimate_positive_rate, logit, sigmoid
from mlcycle.inference.live_rate import LiveScores
from mlcycle.inference.metadata import VersionMetadata
from mlcycle.inference.versions import score_prior

pytestmark = pytest.mark.unit


def test_the_window_keeps_the_most_recent_scores_only() -> None:
    live = LiveScores(0.1, capacity=5)
    live.scores.extend([0.9] * 3)
    live.scores.extend([0.1, 0.2, 0.3, 0.4])
    assert live.snapshot().tolist() == [0.9, 0.1, 0.2, 0.3, 0.4]


def test_the_estimate_finds_a_shifted_traffic_prior() -> None:
    # Scores of a calibrated model stated for 10 % positives, on traffic with 30 %.
    rng = np.random.default_rng(0)
    y = rng.random(10_000) < 0.3
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)
    scores = np.asarray(sigmoid(2 * x + logit(0.1)))
    live = LiveScores(0.1)
    live.scores.extend(scores.tolist())
    report = live.report("toxicity", 3, 0.5)
    assert report.window == 10_000 and report.converged
    assert report.positive_rate == pytest.approx(0.3, abs=0.02)
    assert report.positive_rate == estimate_positive_rate(scores, 0.1).positive_rate
    assert report.mean_score < 0.2  # the plain mean stays near the stated prior
    assert live.gauge_value() == report.positive_rate  # cached for the gauge


def test_without_a_score_prior_or_scores_there_is_no_estimate() -> None:
    unknown = LiveScores(None)
    unknown.scores.append(0.7)
    report = unknown.report("toxicity", 1, 0.5)
    assert report.positive_rate is None and "score_prior" in report.reason
    assert report.flagged_rate == 1.0
    assert math.isnan(unknown.gauge_value())
    empty = LiveScores(0.1).report("toxicity", 1, 0.5)
    assert empty.positive_rate is None and empty.mean_score is None


def test_the_score_prior_comes_from_an_applied_threshold_policy() -> None:
    def prior(policy: object) -> float | None:
        return score_prior(VersionMetadata(threshold_policy=policy))

    assert prior({"applied": True, "score_prior": 0.1}) == 0.1
    assert prior({"applied": False, "score_prior": 0.1}) is None
    assert prior({"applied": True, "score_prior": 1.0}) is None
    assert prior({"applied": True, "score_prior": True}) is None
    assert prior(None) is None


def test_a_multi_class_version_has_no_positive_rate() -> None:
    from types import SimpleNamespace

    from mlcycle.common.errors import InvalidInput
    from mlcycle.inference.versions import ModelVersion

    transform = SimpleNamespace(version="tf-x")
    three = ModelVersion("toxicity", 4, transform, ("0", "1", "2"), None)
    with pytest.raises(InvalidInput, match="3 classes"):
        three.live_window()
    two = ModelVersion("toxicity", 5, transform, ("0", "1"), 0.5, LiveScores(0.1))
    assert two.live_window() is two.live
