"""The blessing decision: figures in, verdict, reason and recorded facts out."""

from __future__ import annotations

import math

import pytest

from mlcycle.trainer.blessing import (
    InfraCheck,
    MetricMissing,
    ProductionScore,
    decide,
    recorded_metric,
)

SERVED = InfraCheck(True, "served by the model server in 1.2 s")
RESCORED = "re-scored on this dev split"


def test_without_a_production_model_a_served_candidate_is_blessed() -> None:
    decision = decide("roc_auc", 0.61234, 0.01, SERVED, None)
    assert decision.blessed
    assert decision.reason == "no production model to beat; dev roc_auc 0.6123"
    assert decision.facts.as_dict() == {
        "metric": "roc_auc",
        "candidate": 0.61234,
        "margin": 0.01,
        "infra_validation": SERVED.message,
    }


def test_beating_production_by_more_than_the_margin_blesses() -> None:
    production = ProductionScore(version=3, value=0.5, measured=RESCORED)
    decision = decide("roc_auc", 0.8, 0.25, SERVED, production)
    assert decision.blessed
    assert decision.reason == (
        "dev roc_auc 0.8000 beats production v3's 0.5000 by more than 0.25 "
        "(re-scored on this dev split)"
    )
    assert decision.facts.as_dict() == {
        "metric": "roc_auc",
        "candidate": 0.8,
        "margin": 0.25,
        "infra_validation": SERVED.message,
        "compared_to": 3,
        "production": 0.5,
        "measured": RESCORED,
    }


@pytest.mark.parametrize(
    ("candidate", "blessed"),
    [
        (0.75, False),  # exactly production + margin: not *more* than the margin
        (math.nextafter(0.75, 1.0), True),  # the least bit more
        (math.nextafter(0.75, 0.0), False),
        (0.5, False),  # as good as production
        (0.25, False),  # worse
    ],
)
def test_the_margin_is_strict(candidate: float, blessed: bool) -> None:
    production = ProductionScore(version=1, value=0.5, measured=RESCORED)
    decision = decide("pr_auc", candidate, 0.25, SERVED, production)
    assert decision.blessed is blessed
    verdict = "beats" if blessed else "does not beat"
    assert decision.reason.startswith(f"dev pr_auc {candidate:.4f} {verdict} production v1's")
    assert decision.facts.compared_to == 1 and decision.facts.production == 0.5


def test_a_zero_margin_still_needs_a_strictly_better_candidate() -> None:
    production = ProductionScore(version=2, value=0.9, measured=RESCORED)
    assert not decide("accuracy", 0.9, 0.0, SERVED, production).blessed
    assert decide("accuracy", 0.9001, 0.0, SERVED, production).blessed


def test_a_negative_margin_is_a_tolerance_and_says_so() -> None:
    production = ProductionScore(version=2, value=0.9, measured=RESCORED)
    within = decide("roc_auc", 0.89, -0.02, SERVED, production)
    assert within.blessed and "is within 0.02 of production v2's 0.9000" in within.reason
    below = decide("roc_auc", 0.87, -0.02, SERVED, production)
    assert not below.blessed and "is more than 0.02 below production v2's" in below.reason


def test_failed_infra_validation_is_never_blessed_whatever_the_figures() -> None:
    failed = InfraCheck(False, "the model server failed to load it: bad graph")
    for production in (None, ProductionScore(version=1, value=0.1, measured=RESCORED)):
        decision = decide("roc_auc", 0.99, 0.01, failed, production)
        assert not decision.blessed
        assert decision.reason == (
            "infra-validation failed: the model server failed to load it: bad graph"
        )
        # Production was not compared: the facts say so by leaving it out.
        assert decision.facts.as_dict() == {
            "metric": "roc_auc",
            "candidate": 0.99,
            "margin": 0.01,
            "infra_validation": failed.message,
        }


def test_a_candidate_without_the_metric_cannot_be_judged() -> None:
    with pytest.raises(MetricMissing, match="roc_auc"):
        decide("roc_auc", None, 0.01, SERVED, None)
    with pytest.raises(ValueError):
        decide("roc_auc", None, 0.01, InfraCheck(False, "down"), None)


def test_production_without_a_recorded_metric_is_held_to_zero() -> None:
    assert recorded_metric({"dev": {"roc_auc": 0.87}}, "roc_auc") == 0.87
    assert recorded_metric({"dev": {"roc_auc": None}}, "roc_auc") == 0.0
    assert recorded_metric({"dev": {"pr_auc": 0.5}}, "roc_auc") == 0.0
    assert recorded_metric({"dev": None, "test": {"roc_auc": 0.9}}, "roc_auc") == 0.0
    assert recorded_metric({}, "roc_auc") == 0.0
    production = ProductionScore(version=4, value=recorded_metric({}, "roc_auc"), measured="x")
    assert decide("roc_auc", 0.02, 0.01, SERVED, production).blessed
