"""The evidence tally and the figures read from it."""

from __future__ import annotations

import numpy as np
import pytest

from mlcycle.rollouts.evidence import RolloutEvidence
from mlcycle.rollouts.tally import LATENCY_EDGES_MS, EvidenceTally, latency_bucket


def test_calls_count_instances_errors_and_latency_per_role() -> None:
    tally = EvidenceTally()
    assert tally.empty
    tally.call("candidate", 10, 0.004, ok=True)
    tally.call("candidate", 5, 0.2, ok=False)
    tally.call("production", 7, 0.003, ok=True)
    evidence = RolloutEvidence(tally, 1.0)
    assert not tally.empty
    assert (evidence.requests("candidate"), evidence.errors("candidate")) == (15, 5)
    assert evidence.error_rate("candidate") == pytest.approx(1 / 3)
    assert evidence.error_rate("production") == 0.0
    assert tally.fields()["candidate:calls"] == 2
    assert RolloutEvidence().error_rate("candidate") is None
    assert RolloutEvidence().latency("candidate").p99_ms is None
    with pytest.raises(ValueError, match="role"):
        tally.call("shadow", 1, 0.1, ok=True)  # type: ignore[arg-type]


def test_latency_quantiles_are_within_ten_percent() -> None:
    rng = np.random.default_rng(7)
    latencies = rng.lognormal(np.log(0.004), 0.6, 20_000)  # seconds, p50 ~ 4 ms
    tally = EvidenceTally()
    for latency in latencies:
        tally.call("production", 1, float(latency), ok=True)
    latency = RolloutEvidence(tally).latency("production")
    assert latency.p50_ms == pytest.approx(np.quantile(latencies, 0.5) * 1000, rel=0.1)
    assert latency.p99_ms == pytest.approx(np.quantile(latencies, 0.99) * 1000, rel=0.1)
    assert latency_bucket(0.0) == 0
    assert latency_bucket(1e9) == len(LATENCY_EDGES_MS)
    assert latency_bucket(LATENCY_EDGES_MS[3]) == 4


def test_pairs_agree_at_each_versions_own_threshold_and_deltas_are_read_back() -> None:
    tally = EvidenceTally()
    production = np.array([0.1, 0.6, 0.6, 0.9])
    candidate = np.array([0.2, 0.45, 0.3, 0.95])
    # Thresholds 0.5 and 0.4: pairs 0, 1 and 3 agree; pair 2 does not.
    tally.pairs(production, candidate, 0.5, 0.4)
    evidence = RolloutEvidence(tally)
    assert evidence.pairs == 4
    assert evidence.agreement == pytest.approx(0.75)
    deltas = evidence.score_delta()
    assert deltas.mean == pytest.approx(np.mean(candidate - production))
    assert deltas.mean_abs == pytest.approx(np.mean(np.abs(candidate - production)))
    with pytest.raises(ValueError, match="4 production scores but 3"):
        tally.pairs(production, candidate[:3], 0.5, 0.5)
    assert RolloutEvidence().agreement is None
    assert RolloutEvidence().score_delta().mean is None


def test_score_delta_quantiles_follow_the_distribution() -> None:
    rng = np.random.default_rng(3)
    production = rng.uniform(0.2, 0.8, 5000)
    deltas = rng.normal(0.05, 0.1, 5000)
    tally = EvidenceTally()
    tally.pairs(production, production + deltas, 0.5, 0.5)
    read = RolloutEvidence(tally).score_delta()
    for q, got in ((0.05, read.p05), (0.5, read.p50), (0.95, read.p95)):
        assert got == pytest.approx(np.quantile(deltas, q), abs=0.02)
    # Deltas beyond [-1, 1] land in the end buckets.
    edge = EvidenceTally()
    edge.pairs(np.array([0.0, 1.0]), np.array([1.0, 0.0]), 0.5, 0.5)
    assert edge.fields()["pair:delta:39"] == 1 and edge.fields()["pair:delta:00"] == 1


def test_fields_round_trip_and_merge_add_up() -> None:
    one, two = EvidenceTally(), EvidenceTally()
    one.call("candidate", 3, 0.01, ok=True)
    one.pairs(np.array([0.2]), np.array([0.7]), 0.5, 0.5)
    two.call("candidate", 4, 0.02, ok=False)
    two.pairs(np.array([0.4, 0.9]), np.array([0.3, 0.8]), 0.5, 0.5)
    as_text = {k.encode(): str(v).encode() for k, v in one.fields().items()}
    assert EvidenceTally.from_fields(as_text) == one
    merged = EvidenceTally.from_fields(one.fields())
    merged.merge(two)
    fields = merged.fields()
    assert fields["candidate:requests"] == 7 and fields["candidate:errors"] == 4
    assert fields["pair:n"] == 3 and fields["pair:agree"] == 2
    assert fields["pair:delta_sum"] == pytest.approx(0.5 - 0.1 - 0.1)
    assert isinstance(fields["pair:n"], int) and isinstance(fields["pair:delta_sum"], float)
    with pytest.raises(ValueError, match="integer"):
        EvidenceTally.from_fields({"pair:n": "1.5"})


def logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(clipped / (1 - clipped))


def correlated_scores(n: int, rho: float, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Low-prevalence scores (logits around -5) whose logits correlate by about ``rho``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(2, n))
    production = -5.0 + 1.5 * z[0]
    candidate = -5.0 + 1.5 * (rho * z[0] + np.sqrt(1 - rho * rho) * z[1])
    return 1 / (1 + np.exp(-production)), 1 / (1 + np.exp(-candidate))


def test_the_score_correlation_is_pearsons_on_clipped_logits() -> None:
    production, candidate = correlated_scores(2000, 0.6)
    production[:3] = (0.0, 1.0, 1e-9)  # clipped to 1e-6 and 1 - 1e-6, never infinite
    tally = EvidenceTally()
    tally.pairs(production, candidate, 0.5, 0.5)
    evidence = RolloutEvidence(tally)
    expected = np.corrcoef(logit(production), logit(candidate))[0, 1]
    assert evidence.score_correlation == pytest.approx(expected, abs=1e-9)
    assert evidence.correlated_pairs == 2000 and evidence.agreement > 0.99  # low prevalence


def test_the_logit_sums_merge_across_replicas_as_one_tally() -> None:
    production, candidate = correlated_scores(900, 0.3)
    one = EvidenceTally()
    one.pairs(production, candidate, 0.5, 0.5)
    pooled = EvidenceTally()
    for part in np.array_split(np.arange(900), 3):  # three replicas, each its own comments
        replica = EvidenceTally()
        replica.pairs(production[part], candidate[part], 0.5, 0.5)
        as_read_back = {k.encode(): repr(v).encode() for k, v in replica.fields().items()}
        pooled.merge(EvidenceTally.from_fields(as_read_back))
    assert pooled.fields() == pytest.approx(one.fields(), rel=1e-12)
    assert pooled.fields().keys() == one.fields().keys()
    assert isinstance(pooled.fields()["pair:logit_n"], int)
    assert RolloutEvidence(pooled).score_correlation == pytest.approx(
        RolloutEvidence(one).score_correlation, abs=1e-12
    )


def test_a_tally_without_logit_sums_has_no_correlation_and_flat_scores_are_read_right() -> None:
    old = RolloutEvidence(EvidenceTally.from_fields({b"pair:n": b"500", b"pair:agree": b"500"}))
    assert old.pairs == 500 and old.score_correlation is None and old.correlated_pairs == 0
    varied = np.linspace(0.01, 0.3, 50)
    flat_candidate = EvidenceTally()
    flat_candidate.pairs(varied, np.full(50, 0.02), 0.5, 0.5)
    assert RolloutEvidence(flat_candidate).score_correlation == 0.0  # follows nothing
    flat_production = EvidenceTally()
    flat_production.pairs(np.full(50, 0.02), varied, 0.5, 0.5)
    assert RolloutEvidence(flat_production).score_correlation is None  # nothing to follow
    single = EvidenceTally()
    single.pairs(np.array([0.2]), np.array([0.3]), 0.5, 0.5)
    assert RolloutEvidence(single).score_correlation is None
