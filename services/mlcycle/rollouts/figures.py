"""A rollout's comparison as rows of figures: one source for ``mlcycle rollout status`` and the
HTML reports, so a terminal and a page always show the same figures the same way."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from mlcycle.contracts.rollouts import Comparison, Rollout, RolloutView

# A rollout's latest decisions a page shows (the API keeps them all).
DECISIONS_SHOWN = 12


def figure(value: float | None, digits: int = 3) -> str:
    """A figure for people: fixed digits, or "-" when there is none yet."""
    return "-" if value is None else f"{value:.{digits}f}"


def comparison_title(comparison: Comparison) -> str:
    """What is compared, and on how many comments."""
    return f"{comparison.pair}: {comparison.pairs} paired comments"


def comparison_header(comparison: Comparison) -> tuple[str, str, str]:
    """The columns: the figure, production's value, the candidate's."""
    return (
        "figure",
        f"production v{comparison.production.version}",
        f"candidate v{comparison.candidate.version}",
    )


def comparison_rows(comparison: Comparison) -> list[tuple[str, str, str]]:
    """Each side's figures, one row per figure."""
    sides = (comparison.production, comparison.candidate)

    def row(name: str, values: list[str]) -> tuple[str, str, str]:
        return (name, values[0], values[1])

    return [
        row("scored", [str(s.requests) for s in sides]),
        row("error rate", [figure(s.error_rate, 4) for s in sides]),
        row("p50 ms", [figure(s.latency.p50_ms, 1) for s in sides]),
        row("p99 ms", [figure(s.latency.p99_ms, 1) for s in sides]),
        row("drift alarms", [", ".join(s.drift_alarms) or "none" for s in sides]),
        row("decisions joined", [str(s.decisions) for s in sides]),
        row("realized accuracy", [figure(s.accuracy) for s in sides]),
    ]


def comparison_summary(comparison: Comparison) -> str:
    """The pair's own figures in one line: agreement, score correlation, score deltas, the
    quality test."""
    delta, quality = comparison.score_delta, comparison.quality
    return (
        f"agreement {figure(comparison.agreement)} · score correlation (logit) "
        f"{figure(comparison.score_correlation)} over {comparison.correlated_pairs} pairs · "
        f"score delta mean {figure(delta.mean)} "
        f"(p05 {figure(delta.p05)}, p95 {figure(delta.p95)}) · quality "
        f"{quality.verdict} (difference {figure(quality.difference)}, "
        f"[{figure(quality.lower)}, {figure(quality.upper)}], margin {quality.margin}) · "
        f"evidence age {figure(comparison.evidence_age_s, 1)} s · model server "
        f"{'up' if comparison.model_server_up else 'DOWN'}"
    )


def comparison_html(comparison: Comparison) -> str:
    """The comparison as an HTML table with its summary line under it."""
    head = "".join(f"<th>{escape(name)}</th>" for name in comparison_header(comparison))
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
        for row in comparison_rows(comparison)
    )
    return (
        f"<table><caption>{escape(comparison_title(comparison))}</caption>"
        f"<tr>{head}</tr>{body}</table><p>{escape(comparison_summary(comparison))}</p>"
    )


def rollout_line(rollout: Rollout) -> str:
    """Which rollout, of what, where it stands, and what started it."""
    return (
        f"{rollout.id}: model {rollout.name} v{rollout.candidate} against v{rollout.baseline} · "
        f"{rollout.phase} {rollout.canary_percent:g} % · {rollout.status} · "
        f"trigger {rollout.trigger}"
    )


def decisions_html(rollout: Rollout, last: int = DECISIONS_SHOWN) -> str:
    """The rollout's latest decisions, each with who took it and why."""
    head = "<tr><th>time</th><th>decision</th><th>phase</th><th>canary %</th><th>by</th>"
    head += "<th>reason</th></tr>"
    body = "".join(
        f"<tr><td>{escape(d.time[11:19])}</td><td>{escape(d.action)}</td>"
        f"<td>{escape(d.phase)}</td><td>{d.canary_percent:g}</td><td>{escape(d.actor)}</td>"
        f"<td>{escape(d.reason)}</td></tr>"
        for d in rollout.decisions[-last:]
    )
    return f"<table>{head}{body}</table>"


def rollouts_html(views: Sequence[RolloutView], heading: str = "h2") -> list[str]:
    """A report's section on rollouts: each one's state and decisions, and the live
    comparison of those still running."""
    parts = [f"<{heading}>Rollouts</{heading}>"]
    if not views:
        parts.append("<p>No rollout yet.</p>")
    sub = f"h{int(heading[1]) + 1}"
    for view in views:
        parts.append(f"<{sub}>{escape(rollout_line(view.rollout))}</{sub}>")
        parts.append(decisions_html(view.rollout))
        if view.comparison is not None:
            parts.append(comparison_html(view.comparison))
    return parts
