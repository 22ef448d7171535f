"""The demo's rollout stage in the summary table and the HTML report."""

from __future__ import annotations

from html import escape

from mlcycle.contracts.rollouts import Rollout
from mlcycle.local.demo_rollouts import Candidate, RolloutsRun
from mlcycle.rollouts.figures import comparison_html, decisions_html

ROLLOUT_NOTE = (
    "After the drift alarm: a retraining run on it (a new label run with the moderators' "
    "decisions among the votes, featurize, train, bless) and the candidate's rollout, "
    "decided by the registry alone on live traffic: shadow, canary steps, production. "
    "Then a drill: a model trained on shuffled labels forced into a rollout, which the "
    "registry's guard must roll back. Live dev comments with their ids flowed the whole "
    "time."
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _versions(answers: dict[int, int]) -> str:
    return ", ".join(f"v{v}: {n:,}" for v, n in answers.items()) or "none"


def candidate_rows(candidate: Candidate) -> list[tuple[str, str]]:
    """One candidate's outcome, the way it went, and where the time went."""
    label = "retrained candidate" if candidate.what == "retrained" else "drill (shuffled labels)"
    version = "-" if candidate.version is None else f"v{candidate.version}"
    rows = [(f"{label}: version, outcome", f"{version}: {candidate.outcome}")]
    rollout = candidate.rollout
    if rollout is not None:
        steps = " → ".join(
            f"{d.action} {d.canary_percent:g} %" for d in rollout.decisions if d.action != "hold"
        )
        rows.append((f"{label}: decisions", steps))
        last = rollout.decisions[-1] if rollout.decisions else None
        if last is not None:
            rows.append((f"{label}: last decision's reason", last.reason))
    rows.append((f"{label}: answers per version while tried", _versions(candidate.answers)))
    times = " / ".join(f"{name} {_seconds(s)}" for name, s in candidate.stages.items())
    rows.append((f"{label}: time per stage", times or "-"))
    return rows


def rollout_rows(run: RolloutsRun) -> list[tuple[str, str]]:
    """The rollout stage's rows of the summary."""
    rows = candidate_rows(run.retrained) + candidate_rows(run.drill)
    rows.append(
        (
            "retraining: alarm → first canary step / canary → production",
            f"{_seconds(run.cycle.get('alarm_to_canary_s'))} / "
            f"{_seconds(run.cycle.get('canary_to_production_s'))}",
        )
    )
    rows.append(("rollouts: failed prediction requests", f"{run.failed_requests:,}"))
    return rows


def _last_evidence(rollout: Rollout) -> str:
    """The comparison the rollout's last decision with evidence was taken on."""
    for decision in reversed(rollout.decisions):
        if decision.evidence is not None:
            when = f"The comparison of its {decision.action} decision at {decision.time[11:19]}:"
            return f"<p>{escape(when)}</p>{comparison_html(decision.evidence)}"
    return ""


def rollout_section(run: RolloutsRun, heading: str = "h3") -> list[str]:
    """The HTML of the stage: the note, then each candidate's decisions with their reasons,
    and the comparison (both versions' figures, agreement, score correlation, score deltas,
    the quality test) its last decision saw."""
    parts = [f"<p>{escape(ROLLOUT_NOTE)}</p>"]
    for candidate in (run.retrained, run.drill):
        title = f"version {candidate.version}: {candidate.what} → {candidate.outcome}"
        parts.append(f"<{heading}>{escape(title)}</{heading}>")
        if candidate.rollout is not None:
            parts.append(decisions_html(candidate.rollout))
            parts.append(_last_evidence(candidate.rollout))
    return parts
