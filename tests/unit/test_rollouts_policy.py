"""The comparison and the policy's decisions on synthetic evidence, branch by branch."""

from __future__ import annotations

import numpy as np
import pytest

from mlcycle.contracts.rollouts import (
    Comparison,
    Latency,
    QualityTest,
    Rollout,
    RolloutDecision,
    RolloutPolicy,
    VersionFigures,
)
from mlcycle.rollouts.compare import compare
from mlcycle.rollouts.evidence import RolloutEvidence, latency_of
from mlcycle.rollouts.policy import decide, pairs_at_step_start
from mlcycle.rollouts.tally import LATENCY_EDGES, EvidenceTally, latency_bucket

NOW = 1_800_000_000.0
POLICY = RolloutPolicy(min_samples=100)


def rollout(
    phase: str = "canary",
    step: int = 0,
    *,
    status: str = "running",
    policy: RolloutPolicy = POLICY,
    started_pairs: int | None = None,
) -> Rollout:
    decisions = []
    if started_pairs is not None:
        decisions.append(decision("advance", started_pairs))
    return Rollout(
        id="r1", name="toxicity", candidate=2, baseline=1, policy=policy, phase=phase,
        step=step, status=status, started_at="t0", updated_at="t0", decisions=decisions,
    )  # fmt: skip


def decision(action: str, pairs: int | None, **seen: int) -> RolloutDecision:
    """A decision recorded when ``pairs`` pairs (and ``seen``'s requests, none by default) had
    been seen."""
    evidence = None if pairs is None else comparison(pairs=pairs, **({"requests": 0} | seen))
    return RolloutDecision(
        time="t", action=action, phase="canary", reason="r", actor="rollout:r1", evidence=evidence
    )


def comparison(
    *,
    pairs: int = 1000,
    agreement: float | None = 0.97,
    correlation: float | None = 0.9,
    correlated: int | None = None,  # pairs the correlation is over; None: every pair
    requests: int = 1000,
    errors: int = 0,
    production_errors: int = 0,
    p99_ms: float | None = 20.0,
    verdict: str = "undecided",
    age: float | None = 1.0,
    server_up: bool = True,
) -> Comparison:
    quality = QualityTest(difference=-0.01, lower=-0.05, upper=0.03, margin=0.02, alpha=0.05,
                          verdict=verdict)  # fmt: skip
    return Comparison(
        pair="production-canary",
        production=VersionFigures(version=1, requests=requests, errors=production_errors,
                                  error_rate=production_errors / requests if requests else None),
        candidate=VersionFigures(
            version=2, requests=requests, errors=errors,
            error_rate=errors / requests if requests else None,
            latency=Latency(p50_ms=5.0, p99_ms=p99_ms),
        ),
        pairs=pairs, agreement=agreement, quality=quality, evidence_age_s=age,
        model_server_up=server_up, score_correlation=correlation,
        correlated_pairs=pairs if correlated is None else correlated,
    )  # fmt: skip


def test_compare_reads_the_evidence_drift_and_quality() -> None:
    tally = EvidenceTally()
    tally.call("candidate", 10, 0.01, ok=True)
    tally.call("production", 10, 0.005, ok=False)
    tally.pairs(np.array([0.1, 0.9]), np.array([0.2, 0.3]), 0.5, 0.5)
    evidence = RolloutEvidence(tally, NOW - 5)
    got = compare(
        rollout("canary"), evidence, production_version=1,
        drift={1: ["score", "length"], 3: ["oov"]}, quality={1: (100, 85), 2: (50, 30)},
        model_server_up=True, now=NOW,
    )  # fmt: skip
    assert got.pair == "production-canary" and got.evidence_age_s == 5.0
    assert (got.production.version, got.candidate.version) == (1, 2)
    assert got.production.drift_alarms == ["length", "score"] and got.candidate.drift_alarms == []
    assert (got.production.errors, got.production.error_rate) == (10, 1.0)
    assert got.candidate.requests == 10 and got.candidate.latency.p50_ms is not None
    assert (got.production.accuracy, got.candidate.accuracy) == (0.85, 0.6)
    assert got.candidate.decisions == 50
    assert got.pairs == 2 and got.agreement == 0.5
    assert got.score_correlation == pytest.approx(1.0) and got.correlated_pairs == 2
    assert got.score_delta.mean == pytest.approx(-0.25)
    assert got.quality.difference == pytest.approx(-0.25) and got.quality.margin == 0.02
    shadow = compare(rollout("shadow", -1), RolloutEvidence(), production_version=1, drift={},
                     quality={}, model_server_up=False, now=NOW)  # fmt: skip
    assert shadow.pair == "production-shadow" and shadow.evidence_age_s is None
    assert shadow.quality.verdict == "undecided" and shadow.candidate.accuracy is None
    assert not shadow.model_server_up


@pytest.mark.parametrize("status", ["paused", "finished"])
def test_a_rollout_not_running_holds(status: str) -> None:
    proposal = decide(rollout(status=status), comparison(errors=500))
    assert proposal.action == "hold" and status in proposal.reason
    assert proposal.hold == "not_running"


@pytest.mark.parametrize(
    ("figures", "said"),
    [
        ({"age": None}, "no replica"),
        ({"age": 61.0}, "61 s old"),
        ({"server_up": False}, "model server is down"),
    ],
)
def test_missing_data_holds_even_on_a_breach_or_enough_pairs(figures: dict, said: str) -> None:
    for extra in ({}, {"errors": 500}, {"verdict": "not_worse"}):
        proposal = decide(rollout("canary", 3), comparison(**figures, **extra))
        assert proposal.action == "hold" and proposal.reason.startswith("missing data")
        assert said in proposal.reason and proposal.hold == "missing_data"


@pytest.mark.parametrize(
    ("figures", "said"),
    [
        ({"errors": 11, "requests": 1000}, "errors 11 of 1000"),
        ({"errors": 2, "requests": 10}, "errors 2 of 10"),  # a broken candidate goes fast
        ({"p99_ms": 400.0}, "p99 400.0 ms > 250 ms"),
        ({"agreement": 0.8}, "agreement 0.800 < 0.9 over 1000 pairs"),
        ({"correlation": 0.1}, "score correlation 0.100 < 0.5 over 1000 pairs"),
        ({"correlation": -0.3, "correlated": 100}, "score correlation -0.300 < 0.5 over 100"),
        ({"verdict": "worse"}, "realized accuracy worse"),
    ],
)
def test_each_significant_breach_rolls_back(figures: dict, said: str) -> None:
    proposal = decide(rollout("canary", 1, started_pairs=990), comparison(**figures))
    assert proposal.action == "rollback" and said in proposal.reason


@pytest.mark.parametrize(
    "figures",
    [
        {"errors": 1, "requests": 10},  # within the budget of min_samples requests
        {"errors": 10, "requests": 1000},  # exactly at the rate bound
        {"errors": 300, "production_errors": 295},  # an outage both versions saw
        {"p99_ms": 400.0, "requests": 99},  # not enough requests to judge latency
        {"agreement": 0.5, "pairs": 99},  # not enough pairs to judge agreement
        {"correlation": 0.0, "pairs": 99},  # not enough pairs to judge the correlation
        {"correlation": 0.0, "correlated": 99},  # most pairs came before it was measured
        {"correlation": None, "correlated": 0},  # evidence pooled before it was measured
    ],
)
def test_breaches_below_significance_do_not_roll_back(figures: dict) -> None:
    proposal = decide(rollout("canary", 1, started_pairs=0), comparison(**figures))
    assert proposal.action != "rollback", proposal.reason


def test_errors_count_from_the_steps_baseline_not_from_an_outage_before_it() -> None:
    # The controller held through an outage (300 of 400 calls failed), then settled.
    settled = rollout("canary", 1).model_copy(
        update={"decisions": [decision("settle", 500, requests=400, errors=300)]}
    )
    fine = decide(settled, comparison(pairs=650, requests=600, errors=302))
    assert fine.action == "advance", fine.reason  # 2 errors in 200 requests since
    broken = decide(settled, comparison(pairs=650, requests=600, errors=310))
    assert broken.action == "rollback" and "errors 10 of 200 requests" in broken.reason


def with_latency(seen: Comparison, calls: dict[int, int]) -> Comparison:
    """``seen`` with the candidate's calls per latency bucket set to ``calls``."""
    counts = np.bincount(list(calls), list(calls.values()), LATENCY_EDGES + 1)
    candidate = seen.candidate.model_copy(update={"latency": latency_of(counts)})
    return seen.model_copy(update={"candidate": candidate})


def test_latency_counts_from_the_steps_baseline_not_from_an_outage_before_it() -> None:
    # 200 calls took 2.5 s while the model server came back; then the controller settled.
    slow, fast = latency_bucket(2500.0), latency_bucket(8.0)
    at_settle = with_latency(comparison(pairs=500, requests=400), {fast: 200, slow: 200})
    settle = decision("settle", None).model_copy(update={"evidence": at_settle})
    settled = rollout("canary", 1).model_copy(update={"decisions": [settle]})
    since = with_latency(comparison(pairs=650, requests=700), {fast: 500, slow: 200})
    assert since.candidate.latency.p99_ms > 250  # over the whole rollout, the outage shows
    fine = decide(settled, since)
    assert fine.action == "advance", fine.reason  # 300 fast calls since the settle
    slow_since = with_latency(since, {fast: 480, slow: 220})  # 20 of those 300 slow
    broken = decide(settled, slow_since)
    assert broken.action == "rollback" and "over 300 calls in this step" in broken.reason


def test_each_step_needs_min_samples_new_pairs() -> None:
    assert pairs_at_step_start(rollout()) == 0
    held = decide(rollout("canary", 1, started_pairs=950), comparison(pairs=1000))
    assert held.action == "hold" and "50 of 100 pairs in canary 25 %" in held.reason
    assert held.hold == "samples"
    moved = decide(rollout("canary", 1, started_pairs=900), comparison(pairs=1000))
    assert (moved.action, moved.step) == ("advance", 2) and "canary 50 %" in moved.reason
    assert "100 pairs" in moved.reason and "agreement 0.970" in moved.reason
    # The last decision that began a step counts; a hold does not restart it.
    later = rollout("canary", 1, started_pairs=950)
    later = later.model_copy(update={"decisions": [*later.decisions, decision("hold", 990)]})
    assert pairs_at_step_start(later) == 950
    forced = later.model_copy(update={"decisions": [*later.decisions, decision("force", None)]})
    assert pairs_at_step_start(forced) == 0


def test_shadow_advances_to_the_first_canary_step_and_the_last_step_promotes() -> None:
    first = decide(rollout("shadow", -1), comparison())
    assert (first.action, first.step) == ("advance", 0) and "canary 5 %" in first.reason
    assert "in shadow" in first.reason
    last = decide(rollout("canary", 3, started_pairs=0), comparison())
    assert last.action == "promote" and "canary 100 %" in last.reason


def live(production_logits: np.ndarray, candidate_logits: np.ndarray) -> Comparison:
    """The comparison of a shadow phase whose pairs have these logits, at 0.5 thresholds."""
    tally = EvidenceTally()
    tally.call("production", len(production_logits), 0.004, ok=True)
    tally.call("candidate", len(candidate_logits), 0.005, ok=True)
    tally.pairs(1 / (1 + np.exp(-production_logits)), 1 / (1 + np.exp(-candidate_logits)),
                0.5, 0.5)  # fmt: skip
    return compare(rollout("shadow", -1), RolloutEvidence(tally, NOW), production_version=1,
                   drift={}, quality={}, model_server_up=True, now=NOW)  # fmt: skip


def test_agreeing_labels_with_scores_that_follow_nothing_roll_back() -> None:
    # A low-prevalence stream: both versions label every comment negative (agreement 1.0);
    # the candidate's scores are drawn independently of production's.
    rng = np.random.default_rng(5)
    production = rng.normal(-5.0, 1.5, 400)
    blind = live(production, rng.normal(-5.0, 1.5, 400))
    assert blind.agreement == 1.0 and abs(blind.score_correlation or 0.0) < 0.2
    proposal = decide(rollout("shadow", -1), blind)
    assert proposal.action == "rollback" and "score correlation" in proposal.reason
    assert "< 0.5 over 400 pairs" in proposal.reason
    # A retrain: its logits follow production's with noise of their own.
    retrained = live(production, 0.9 * production + rng.normal(0.0, 0.6, 400))
    assert retrained.agreement == 1.0 and (retrained.score_correlation or 0.0) > 0.8
    moved = decide(rollout("shadow", -1), retrained)
    assert moved.action == "advance" and "score correlation 0.9" in moved.reason


def test_evidence_pooled_before_the_correlation_existed_is_judged_without_it() -> None:
    old = EvidenceTally.from_fields({"pair:n": 400, "pair:agree": 400, "candidate:requests": 400,
                                     "production:requests": 400})  # fmt: skip
    seen = compare(rollout("shadow", -1), RolloutEvidence(old, NOW), production_version=1,
                   drift={}, quality={}, model_server_up=True, now=NOW)  # fmt: skip
    assert seen.score_correlation is None and seen.correlated_pairs == 0
    moved = decide(rollout("shadow", -1), seen)
    assert moved.action == "advance" and "score correlation n/a" in moved.reason


def test_require_quality_holds_promotion_until_not_worse() -> None:
    strict = POLICY.model_copy(update={"require_quality": True})
    held = decide(rollout("canary", 3, policy=strict), comparison(verdict="undecided"))
    assert held.action == "hold" and "waiting for realized quality" in held.reason
    assert held.hold == "quality"
    assert "verdict undecided" in held.reason and "-0.050" in held.reason
    # An earlier step still advances without it.
    assert decide(rollout("canary", 2, policy=strict), comparison()).action == "advance"
    promoted = decide(rollout("canary", 3, policy=strict), comparison(verdict="not_worse"))
    assert promoted.action == "promote"


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("not running: status paused, phase canary", "not_running"),
        ("missing data: the model server is down", "missing_data"),
        ("recovering: data is back; this step counts afresh once it settles", "recovering"),
        ("collecting: 50 of 100 pairs in canary 25 %", "samples"),
        ("100 pairs in canary 100 %, ...; waiting for realized quality: verdict undecided",
         "quality"),
    ],
)
def test_a_hold_stored_before_holds_had_a_kind_reads_with_the_kind_of_its_reason(
    reason: str, kind: str
) -> None:
    stored = {"time": "2026-01-01T00:00:00+00:00", "action": "hold", "phase": "canary",
              "reason": reason, "actor": "rollout:r-1"}  # fmt: skip
    assert RolloutDecision.model_validate(stored).hold == kind
    assert RolloutDecision.model_validate({**stored, "action": "pause"}).hold is None
    kept = RolloutDecision.model_validate({**stored, "hold": "samples"})
    assert kept.hold == "samples"  # a recorded kind is never guessed again
