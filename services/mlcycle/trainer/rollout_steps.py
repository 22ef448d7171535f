"""When a rollout's step may count its evidence: settling after a step starts, recovering
after missing data (decision 0017).

Replicas flush their evidence every second and score off the answer's path in rounds,
so evidence of the step before still arrives for a while after a step starts; and what
replicas saw while the model server was down is no evidence about the candidate. The
controller therefore records ``settle`` once a step is old enough, and a ``recovering``
hold when data is back after an outage; the step counts its pairs and errors from there.
"""

from __future__ import annotations

from datetime import datetime

from mlcycle.contracts.rollouts import Comparison, Rollout, RolloutDecision
from mlcycle.rollouts.policy import STEP_STARTS, missing_data

# Replicas flush their evidence every second and score off the answer's path in rounds
# of half a second: three seconds after a step starts, the step before has all arrived.
DEFAULT_SETTLE_S = 3.0
RECOVERING = "recovering"


def counts_from(decision: RolloutDecision) -> bool:
    """A decision after which the step waits to settle, then counts afresh."""
    if decision.action in STEP_STARTS or decision.action == "settle":
        return True
    return decision.action == "hold" and decision.hold == "recovering"


def settle_time(evidence_flush_s: float) -> float:
    """How long a step waits for the previous step's evidence: two flushes and a round."""
    return 2.0 * evidence_flush_s + 1.0


def recovery_due(rollout: Rollout, comparison: Comparison) -> bool:
    """Data is back after the last decision held on missing data."""
    last = rollout.decisions[-1] if rollout.decisions else None
    if last is None or last.action != "hold" or last.hold != "missing_data":
        return False
    return missing_data(rollout.policy, comparison) is None


def settle_due(rollout: Rollout, now: float, settle_s: float) -> bool | None:
    """None when the step needs no settling (settled already, or no wait); False while it is
    younger than ``settle_s``; True when it should record ``settle`` now."""
    if settle_s <= 0:
        return None  # nothing arrives late (a test's evidence, say)
    since = next((d for d in reversed(rollout.decisions) if counts_from(d)), None)
    if since is None or since.action == "settle":
        return None
    return now - datetime.fromisoformat(since.time).timestamp() >= settle_s
