"""What a running rollout does next, from one comparison: advance, promote, hold or roll back.

The rules, in order (the first that applies decides):

1. Not running (paused or finished), or in no phase that moves: **hold**.
2. Missing data is never evidence: no evidence ever reported, evidence older than
   ``policy.evidence_max_age_s``, or the model server down: **hold** ("missing data").
3. A significant breach: **rollback**, as soon as it is significant:
   - errors: the candidate's errors in this step (since its baseline, see 4) beyond those
     production's own error rate explains
     exceed ``max_error_rate * max(requests, min_samples)``, i.e. its error rate is over
     the bound on at least ``min_samples`` requests, or its errors alone already exceed
     what ``min_samples`` requests allow (a broken candidate goes fast). Errors both
     versions share (a model server restarting fails them alike) are not the candidate's;
   - latency: the p99 of its calls in this step (since the same baseline) is over
     ``p99_latency_ms`` on at least ``min_samples`` calls;
   - agreement: under ``min_agreement`` on at least ``min_samples`` pairs;
   - score correlation: the logit correlation of the candidate's scores with production's
     under ``min_score_correlation`` on at least ``min_samples`` pairs that carry it
     (evidence pooled before it was measured has none: the check waits). At a low
     prevalence both versions label nearly every comment negative, so agreement stays
     near 1 even for a candidate whose scores carry no information about production's;
   - quality: the sequential test's verdict is ``worse``.
4. Fewer than ``min_samples`` pairs since the phase or step began: **hold**. The
   pairs at its start are the comparison recorded with the last start, advance,
   resume or force decision, or with the ``settle`` decision after it (0 when it has
   none): the controller records ``settle`` once the previous step's evidence has all
   arrived (replicas flush every second and score off the path in rounds), so pairs
   the shadow scored just before the first canary step never count for it.
5. Shadow: **advance** to the first canary step; canary step ``i``: **advance** to
   ``i + 1``; the last step (100 %): **promote**, except that with
   ``policy.require_quality`` promotion also needs the verdict ``not_worse``
   (else **hold**, saying so).

Every reason names the figures it used; every hold also carries its kind
(:data:`~mlcycle.contracts.rollouts.HoldKind`), which is what code matches on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mlcycle.contracts.rollouts import Comparison, HoldKind, Rollout, RolloutPolicy
from mlcycle.rollouts.evidence import latency_since

ProposalAction = Literal["advance", "promote", "hold", "rollback"]
# Decisions after which a phase or step counts its pairs afresh.
STEP_STARTS = frozenset({"start", "advance", "resume", "force"})
# The decision that moves a step's baseline to the pairs seen once its start settled.
SETTLED = "settle"


@dataclass(frozen=True)
class Proposal:
    """What the policy proposes, and why (with the figures)."""

    action: ProposalAction
    reason: str
    step: int | None = None  # with "advance": the canary step (index) to move to
    hold: HoldKind | None = None  # with "hold": the kind of reason


def step_baseline(rollout: Rollout) -> Comparison | None:
    """What had been seen when the current phase or step began counting (None: nothing)."""
    for decision in reversed(rollout.decisions):
        if decision.action in STEP_STARTS or decision.action == SETTLED:
            return decision.evidence
    return None


def pairs_at_step_start(rollout: Rollout) -> int:
    """The pairs counted when the current phase or step began."""
    baseline = step_baseline(rollout)
    return baseline.pairs if baseline is not None else 0


def missing_data(policy: RolloutPolicy, comparison: Comparison) -> str | None:
    """Why ``comparison`` is no evidence at all (None when it is)."""
    return _missing(policy, comparison)


def _missing(policy: RolloutPolicy, comparison: Comparison) -> str | None:
    if not comparison.model_server_up:
        return "missing data: the model server is down"
    age = comparison.evidence_age_s
    if age is None:
        return "missing data: no replica has reported evidence yet"
    if age > policy.evidence_max_age_s:
        return (
            f"missing data: the last evidence is {age:.0f} s old "
            f"(> {policy.evidence_max_age_s:g} s)"
        )
    return None


def _breach(
    policy: RolloutPolicy, comparison: Comparison, baseline: Comparison | None
) -> str | None:
    candidate, enough = comparison.candidate, policy.min_samples
    # Errors count from the step's baseline: an outage before it (which the controller
    # held through, then settled after) is no evidence about the candidate.
    before_c = baseline.candidate if baseline is not None else None
    before_p = baseline.production if baseline is not None else None
    errors = candidate.errors - (before_c.errors if before_c else 0)
    requests = candidate.requests - (before_c.requests if before_c else 0)
    p_errors = comparison.production.errors - (before_p.errors if before_p else 0)
    p_requests = comparison.production.requests - (before_p.requests if before_p else 0)
    shared = (p_errors / p_requests if p_requests > 0 else 0.0) * requests
    budget = policy.max_error_rate * max(requests, enough)
    if errors - shared > budget:
        return (
            f"candidate errors {errors} of {requests} requests in this step "
            f"({shared:.1f} explained by production's error rate) exceed max_error_rate "
            f"{policy.max_error_rate:g} x {max(requests, enough)}"
        )
    # Latency too: slow calls while the model server came back belong to the outage.
    latency = latency_since(candidate.latency, before_c.latency if before_c else None)
    calls = sum(latency.buckets.values()) if latency.buckets else candidate.requests
    p99 = latency.p99_ms
    if calls >= enough and p99 is not None and p99 > policy.p99_latency_ms:
        return (
            f"candidate p99 {p99:.1f} ms > {policy.p99_latency_ms:g} ms "
            f"over {calls} calls in this step"
        )
    agreement = comparison.agreement
    if comparison.pairs >= enough and agreement is not None and agreement < policy.min_agreement:
        return f"agreement {agreement:.3f} < {policy.min_agreement:g} over {comparison.pairs} pairs"
    correlation, correlated = comparison.score_correlation, comparison.correlated_pairs
    floor = policy.min_score_correlation
    if correlated >= enough and correlation is not None and correlation < floor:
        return f"score correlation {correlation:.3f} < {floor:g} over {correlated} pairs"
    quality = comparison.quality
    if quality.verdict == "worse":
        return (
            f"realized accuracy worse: difference {quality.difference:+.3f}, "
            f"upper bound {quality.upper:+.3f} < -{quality.margin:g} "
            f"(alpha {quality.alpha:g}; {comparison.production.decisions} and "
            f"{comparison.candidate.decisions} decisions)"
        )
    return None


def _checks(comparison: Comparison) -> str:
    candidate = comparison.candidate
    agreement = "n/a" if comparison.agreement is None else f"{comparison.agreement:.3f}"
    r = comparison.score_correlation
    correlation = "n/a" if r is None else f"{r:.3f}"
    error_rate = "n/a" if candidate.error_rate is None else f"{candidate.error_rate:.4f}"
    p99 = "n/a" if candidate.latency.p99_ms is None else f"{candidate.latency.p99_ms:.1f} ms"
    return (
        f"agreement {agreement}, score correlation {correlation}, error rate {error_rate}, "
        f"p99 {p99}"
    )


def decide(rollout: Rollout, comparison: Comparison) -> Proposal:
    """The next move of ``rollout`` given ``comparison`` (rules in the module docstring)."""
    policy = rollout.policy
    if rollout.status != "running" or rollout.phase not in ("shadow", "canary"):
        why = f"not running: status {rollout.status}, phase {rollout.phase}"
        return Proposal("hold", why, hold="not_running")
    missing = _missing(policy, comparison)
    if missing is not None:
        return Proposal("hold", missing, hold="missing_data")
    breach = _breach(policy, comparison, step_baseline(rollout))
    if breach is not None:
        return Proposal("rollback", breach)
    new_pairs = comparison.pairs - pairs_at_step_start(rollout)
    where = "shadow" if rollout.phase == "shadow" else f"canary {rollout.canary_percent:g} %"
    if new_pairs < policy.min_samples:
        why = f"collecting: {new_pairs} of {policy.min_samples} pairs in {where}"
        return Proposal("hold", why, hold="samples")
    seen = f"{new_pairs} pairs in {where}, {_checks(comparison)}"
    steps = policy.canary_steps
    next_step = 0 if rollout.phase == "shadow" else rollout.step + 1
    if next_step < len(steps):
        return Proposal("advance", f"{seen}: on to canary {steps[next_step]:g} %", next_step)
    quality = comparison.quality
    if policy.require_quality and quality.verdict != "not_worse":
        bound = "n/a" if quality.lower is None else f"{quality.lower:+.3f}"
        return Proposal(
            "hold",
            f"{seen}; waiting for realized quality: verdict {quality.verdict}, lower bound "
            f"{bound} vs -{quality.margin:g} ({comparison.candidate.decisions} decisions)",
            hold="quality",
        )
    return Proposal("promote", f"{seen}: promoting at 100 %")
