"""Production against the candidate over one rollout: the figures a decision is taken on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mlcycle.contracts.rollouts import Comparison, Role, Rollout, VersionFigures
from mlcycle.rollouts.evidence import RolloutEvidence
from mlcycle.rollouts.sequential import quality_test


def _figures(
    evidence: RolloutEvidence,
    role: Role,
    version: int,
    drift: Mapping[int, Sequence[str]],
    quality: Mapping[int, tuple[int, int]],
) -> VersionFigures:
    decisions, correct = quality.get(version, (0, 0))
    return VersionFigures(
        version=version,
        requests=evidence.requests(role),
        errors=evidence.errors(role),
        error_rate=evidence.error_rate(role),
        latency=evidence.latency(role),
        drift_alarms=sorted(drift.get(version, ())),
        decisions=decisions,
        accuracy=correct / decisions if decisions else None,
    )


def compare(
    rollout: Rollout,
    evidence: RolloutEvidence,
    *,
    production_version: int,
    drift: Mapping[int, Sequence[str]],
    quality: Mapping[int, tuple[int, int]],
    model_server_up: bool,
    now: float,
) -> Comparison:
    """The comparison of ``production_version`` and ``rollout.candidate`` at ``now``.

    ``drift``: the monitor's alarming signals per version; ``quality``:
    ``(decisions, correct)`` per version from the moderators' feedback;
    ``now`` and ``evidence.updated_at`` are epoch seconds (a replica's clock
    slightly ahead counts as fresh, never as negative age).
    """
    age = None if evidence.updated_at is None else max(0.0, now - evidence.updated_at)
    policy = rollout.policy
    return Comparison(
        pair="production-canary" if rollout.phase == "canary" else "production-shadow",
        production=_figures(evidence, "production", production_version, drift, quality),
        candidate=_figures(evidence, "candidate", rollout.candidate, drift, quality),
        pairs=evidence.pairs,
        agreement=evidence.agreement,
        score_correlation=evidence.score_correlation,
        correlated_pairs=evidence.correlated_pairs,
        score_delta=evidence.score_delta(),
        quality=quality_test(
            quality.get(production_version, (0, 0)),
            quality.get(rollout.candidate, (0, 0)),
            margin=policy.quality_margin,
            alpha=policy.alpha,
        ),
        evidence_age_s=age,
        model_server_up=model_server_up,
    )
