"""The retraining policy's rules: whether a run may start now, and if not, why and when.

Pure functions of the policy, the runs so far (newest first) and the time, so that the
rules are tested on their own with a fake clock; :mod:`mlcycle.trainer.retraining`
applies them and records the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mlcycle.common.errors import InvalidInput
from mlcycle.common.settings import RolloutSettings
from mlcycle.contracts.retraining import (
    DAY_S,
    Refusal,
    RetrainingPolicy,
    RetrainingRun,
    Trigger,
)


def iso(ts: float) -> str:
    """``ts`` (epoch seconds) as an ISO-8601 UTC timestamp."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


def epoch(timestamp: str) -> float:
    """An ISO-8601 timestamp as epoch seconds."""
    return datetime.fromisoformat(timestamp).timestamp()


def refusal_of(
    policy: RetrainingPolicy,
    runs: Sequence[RetrainingRun],
    trigger: Trigger,
    why: Mapping[str, Any],
    now: float,
    *,
    force: bool = False,
) -> tuple[Refusal, str, float | None] | None:
    """The rule that refuses a run now, the reason, and when a run may start (None: no
    time helps); None when a run may start. ``runs``: every run so far, newest first.

    In order: a run already running, a trigger without its evidence, then (unless
    ``force``) the cooldown since the last run started and the daily budget.
    """
    running = next((r for r in runs if r.active), None)
    if running is not None:
        stage = running.stages[-1].name if running.stages else "no stage yet"
        return "running", f"run {running.id} is still running ({stage}): wait or stop it", None
    missing = missing_evidence(policy, trigger, why)
    if missing is not None:
        return "no_trigger", missing, None
    if force:
        return None
    started = [r for r in runs if r.started]
    if started:
        until = epoch(started[0].started_at) + policy.cooldown_s
        if until > now:
            return (
                "cooldown",
                f"cooldown: run {started[0].id} started at {started[0].started_at}; "
                f"the next may start at {iso(until)}",
                until,
            )
    today = _started_within_a_day(started, now)
    if len(today) >= policy.max_runs_per_day:
        until = today[len(today) - policy.max_runs_per_day] + DAY_S
        return (
            "budget",
            f"budget spent: {len(today)} runs started in the last 24 hours, at most "
            f"{policy.max_runs_per_day}; the next may start at {iso(until)}",
            until,
        )
    return None


def missing_evidence(
    policy: RetrainingPolicy, trigger: Trigger, why: Mapping[str, Any]
) -> str | None:
    """Why ``why`` does not show what ``trigger`` needs under ``policy``; None if it does.

    ``new_votes`` needs ``why.new_votes`` at least the policy's count; ``drift`` needs
    ``why.signals`` naming an alarming signal the policy retrains on. The schedule and a
    person need no evidence.
    """
    if trigger == "new_votes":
        if policy.new_votes is None:
            return "the policy does not retrain on new votes (new_votes is null)"
        new = why.get("new_votes")
        new = new if isinstance(new, int) and not isinstance(new, bool) else 0
        if new < policy.new_votes:
            return f"{new} new votes since the last run; the policy retrains at {policy.new_votes}"
    elif trigger == "drift":
        signals = why.get("signals")
        if not isinstance(signals, list) or not signals:
            return "a drift trigger must name its alarming signals (why.signals)"
        wanted = policy.drift_signals
        if wanted is not None and not set(map(str, signals)) & set(wanted):
            return (
                f"no alarming signal ({', '.join(map(str, signals))}) is one the policy "
                f"retrains on ({', '.join(wanted)})"
            )
    return None


def allowed_at(policy: RetrainingPolicy, started: Sequence[RetrainingRun], now: float) -> float:
    """When cooldown and budget next allow a run (``now`` when they do already).
    ``started``: the runs that started (not skipped), newest first."""
    if not started:
        return now
    allowed = epoch(started[0].started_at) + policy.cooldown_s
    today = _started_within_a_day(started, now)
    if len(today) >= policy.max_runs_per_day:
        allowed = max(allowed, today[len(today) - policy.max_runs_per_day] + DAY_S)
    return max(allowed, now)


def runs_last_day(started: Sequence[RetrainingRun], now: float) -> int:
    """How many of ``started`` started in the 24 hours before ``now``."""
    return len(_started_within_a_day(started, now))


def _started_within_a_day(started: Sequence[RetrainingRun], now: float) -> list[float]:
    """Start times (oldest first) of the runs started in the 24 hours before ``now``."""
    return sorted(t for t in (epoch(r.started_at) for r in started) if now - t < DAY_S)


def load_policy(config: RolloutSettings) -> RetrainingPolicy:
    """The retraining policy: the policy file's (``MLCYCLE_RETRAINING_POLICY_FILE``), else
    the defaults; a file that is not a valid policy is InvalidInput naming it."""
    if config.retraining_policy_file is None:
        return RetrainingPolicy()
    try:
        return RetrainingPolicy.model_validate_json(config.retraining_policy_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"retraining policy file {config.retraining_policy_file}: {exc}",
            details={"path": str(config.retraining_policy_file)},
        ) from None
