"""What ``mlcycle monitor`` shows: per model version, each drift signal's state and the quality
windows, as terminal tables and as one HTML page (the demo's report can embed the same part).

The same rows make the terminal tables and the page's tables. The page is self-contained
(CSS and PNG plots inline, as the demo's and the trainer's reports are): per signal, the
statistic over time against its alarm threshold, and the reference-vs-live shares of the
latest window; per version, the quality estimated from the scores beside the quality the
moderators' decisions realized, over time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlcycle.clients.inference import InferenceClient
from mlcycle.common.figures import inline_figure
from mlcycle.common.files import write_atomically
from mlcycle.contracts.monitoring import (
    MonitoringState,
    QualityFigures,
    QualityWindow,
    SignalState,
    VersionMonitoring,
    WindowResult,
)

NONE = "–"
# Windows asked for per history request while walking a signal's history.
PAGE = 1000
# The figures a quality window has both estimated and realized, in the order shown.
FIGURES = ("f1", "roc_auc", "precision", "recall")
# Quality windows in the terminal table; the page shows them all.
TERMINAL_QUALITY_WINDOWS = 8
# Past this many bins a shares plot draws lines without a label per bin (the hashed n-gram
# buckets): a bar per bucket would be unreadable.
MAX_LABELED_BINS = 40
_STATUS_STYLE = {"ok": "green", "alarm": "bold red", "insufficient": "yellow"}
_REFERENCE, _LIVE, _ALARM = "#4c78a8", "#e45756", "#d62728"

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:76rem;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem;margin-top:1.5rem}
table{border-collapse:collapse;margin:.5rem 1.5rem .5rem 0;font-size:.9rem}
th,td{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}th{background:#f5f5f5}
.plots{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
figure{margin:0}img{max-width:100%;height:auto}.note{color:#777}.alarm{color:#c00;font-weight:600}
"""


@dataclass(frozen=True)
class MonitorView:
    """The monitor's state and, per (model version, signal), its evaluated windows oldest
    first: everything the tables and the page draw."""

    state: MonitoringState
    history: dict[tuple[int, str], list[WindowResult]] = field(default_factory=dict)

    def windows(self, version: int, signal: str) -> list[WindowResult]:
        return self.history.get((version, signal), [])


def collect(
    client: InferenceClient,
    *,
    version: int | None = None,
    since: datetime | None = None,
    windows: int = 200,
) -> MonitorView:
    """The state of every loaded version (or ``version``'s), and the latest ``windows``
    windows (closed after ``since``) of each of its signals."""
    state = client.monitoring(version)
    history = {
        (kept.model_version, signal.signal): latest_windows(
            client, kept.model_version, signal.signal, since=since, keep=windows
        )
        for kept in state.versions
        for signal in kept.signals
    }
    return MonitorView(state, history)


def latest_windows(
    client: InferenceClient, version: int, signal: str, *, since: datetime | None, keep: int
) -> list[WindowResult]:
    """The last ``keep`` windows of one signal, oldest first. The route answers the oldest
    first, a page at a time, so the pages are walked to the end (a signal keeps a bounded
    history: a few pages at most)."""
    kept: deque[WindowResult] = deque(maxlen=keep)
    while True:
        page = client.monitoring_history(since=since, version=version, signal=signal, limit=PAGE)
        page = sorted(page, key=lambda w: w.closed_at)
        kept.extend(page)
        if len(page) < PAGE or (since is not None and page[-1].closed_at <= since):
            return list(kept)
        since = page[-1].closed_at


# -- rows shared by the terminal and the page ----------------------------------------------------

SIGNAL_HEADER = ("signal", "status", "statistic", "threshold (exit)", "test", "window", "since")
QUALITY_HEADER = (
    "window",
    "comments",
    "decisions (pending)",
    *(f"{name} est / real" for name in FIGURES),
    "error f1 / roc_auc",
    "label lag p50 / p90",
)


def num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return NONE
    return f"{value:.{digits}f}"


def _stat(value: float | None) -> str:
    # Effect sizes span decades (a divergence of 0.0004, a z of 12): significant digits.
    if value is None or not math.isfinite(value):
        return NONE
    return f"{value:.4g}"


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else NONE


def _span(start: datetime, end: datetime | None) -> str:
    """``start`` to ``end``, the end's date left out when it is the start's."""
    if end is None:
        return f"{_when(start)}, filling"
    shown = end.strftime("%H:%M:%S") if end.date() == start.date() else _when(end)
    return f"{_when(start)} to {shown}"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return NONE
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def signal_row(state: SignalState) -> tuple[str, ...]:
    """One signal's row: its status, the latest statistic against its thresholds, and since
    when it has been in (or out of) alarm."""
    last = state.last
    status = state.status if state.reason is None else f"{state.status}: {state.reason}"
    if last is None:
        return (state.signal, status, NONE, NONE, NONE, NONE, _when(state.since))
    threshold = f"{_stat(last.threshold)} ({_stat(last.exit_threshold)})"
    window = f"{last.window:,}, {_span(last.started_at, last.closed_at)}"
    return (state.signal, status, _stat(last.statistic), threshold, last.test, window,
            _when(state.since))  # fmt: skip


def _figure(figures: QualityFigures | None, name: str) -> float | None:
    return None if figures is None else getattr(figures, name)


def quality_row(window: QualityWindow) -> tuple[str, ...]:
    """One quality window: each figure estimated beside realized, the estimate's error, the
    label lag."""
    comments = window.estimated.comments if window.estimated is not None else None
    if comments is None and window.realized is not None:
        comments = window.realized.comments
    pairs = [
        f"{num(_figure(window.estimated, name))} / {num(_figure(window.realized, name))}"
        for name in FIGURES
    ]
    error = window.estimate_error
    lag = window.label_lag_s
    return (
        _span(window.started_at, window.closed_at),
        NONE if comments is None else f"{comments:,}",
        f"{window.decisions:,} ({window.pending:,})",
        *pairs,
        f"{num(error.get('f1'))} / {num(error.get('roc_auc'))}",
        f"{_duration(lag.get('p50'))} / {_duration(lag.get('p90'))}",
    )


# -- the terminal ------------------------------------------------------------------------------


def signal_table(model: str, version: VersionMonitoring) -> Table:
    table = Table(title=f"{model} v{version.model_version}: drift signals")
    for name in SIGNAL_HEADER:
        table.add_column(name, justify="left" if name in ("signal", "status", "test") else "right")
    for state in version.signals:
        cells = [Text(cell) for cell in signal_row(state)]
        cells[1].stylize(_STATUS_STYLE.get(state.status, "dim"))
        table.add_row(*cells)
    return table


def quality_table(model: str, version: VersionMonitoring, *, last: int) -> Table:
    shown = version.quality[-last:]
    title = f"{model} v{version.model_version}: quality, estimated / realized"
    if len(version.quality) > len(shown):
        title += f" (last {len(shown)} of {len(version.quality)} windows)"
    table = Table(title=title)
    for name in QUALITY_HEADER:
        table.add_column(name, justify="left" if name == "window" else "right")
    for window in shown:
        table.add_row(*(Text(cell) for cell in quality_row(window)))
    return table


def print_state(
    console: Console, state: MonitoringState, *, quality_windows: int = TERMINAL_QUALITY_WINDOWS
) -> None:
    """A table of signals per model version, and its quality windows when it has any."""
    if not state.versions:
        console.print(f"{state.model}: no model version monitored yet")
        return
    for version in state.versions:
        console.print(signal_table(state.model, version))
        if version.quality:
            console.print(quality_table(state.model, version, last=quality_windows))
        else:
            console.print(f"{state.model} v{version.model_version}: no quality window yet")


# -- the page ----------------------------------------------------------------------------------


def write_report(
    path: Path, view: MonitorView, *, generated_at: datetime, more: Sequence[str] = ()
) -> Path:
    """The monitor's HTML page at ``path`` (and ``more`` sections), replaced atomically."""
    title = f"mlcycle monitor: {view.state.model}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='note'>State at {escape(_when(generated_at))} UTC, across all replicas.</p>",
        *monitoring_section(view, heading="h2"),
        *more,
        "</body></html>",
    ]
    write_atomically(path, "\n".join(parts).encode("utf-8"))
    return path


def monitoring_section(view: MonitorView, *, heading: str = "h2") -> list[str]:
    """The page's body, one part per model version: what a larger report embeds."""
    sub = f"h{int(heading[1]) + 1}"
    if not view.state.versions:
        return [f"<p>{escape(view.state.model)}: no model version monitored yet.</p>"]
    parts: list[str] = []
    for version in view.state.versions:
        v = version.model_version
        parts += [
            f"<{heading}>{escape(view.state.model)} v{v}</{heading}>",
            _table(SIGNAL_HEADER, [signal_row(s) for s in version.signals]),
            f"<{sub}>Quality: estimated from the scores, realized from decisions</{sub}>",
        ]
        if version.quality:
            parts += [
                _table(QUALITY_HEADER, [quality_row(w) for w in version.quality]),
                inline_figure(
                    _quality_plot,
                    version.quality,
                    alt=f"quality of v{v}",
                    plot="quality",
                    size=(9.0, 3.6),
                ),  # fmt: skip
            ]
        else:
            parts.append("<p class='note'>No quality window yet.</p>")
        for state in version.signals:
            parts += _signal_part(state, view.windows(v, state.signal), sub)
    return parts


def _signal_part(state: SignalState, windows: list[WindowResult], heading: str) -> list[str]:
    mark = " <span class='alarm'>alarm</span>" if state.alarm else ""
    parts = [f"<{heading}>{escape(state.signal)}{mark}</{heading}>"]
    if state.reason:
        parts.append(f"<p class='note'>{escape(state.status)}: {escape(state.reason)}</p>")
    latest = windows[-1] if windows else state.last
    plots = []
    if windows:
        plots.append(
            inline_figure(
                _statistic_plot,
                windows,
                alt=f"{state.signal} over time",
                plot="statistic",
                size=(5.8, 3.6),
            )  # fmt: skip
        )
    if latest is not None and latest.bins:
        plots.append(
            inline_figure(
                _shares_plot,
                latest,
                alt=f"{state.signal}: reference vs live",
                plot="shares",
                size=(5.8, 3.6),
            )  # fmt: skip
        )
    if not plots:
        parts.append("<p class='note'>No window evaluated yet.</p>")
    else:
        parts.append(f"<div class='plots'>{''.join(plots)}</div>")
    if latest is not None and latest.movers:
        rows = [
            (
                m.key,
                num(m.reference),
                num(m.live),
                ", ".join(m.examples[:5]) or NONE,
                ", ".join(m.ids[:5]) or NONE,
            )
            for m in latest.movers
        ]
        parts += [
            "<p class='note'>What moved most in the latest window:</p>",
            _table(("bin", "reference share", "live share", "made of", "example ids"), rows),
        ]
    return parts


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else math.nan


def _statistic_plot(fig: Any, windows: list[WindowResult]) -> None:
    ax = fig.add_subplot()
    at = [w.closed_at for w in windows]
    ax.plot(at, [_finite(w.statistic) for w in windows], marker=".", color=_REFERENCE,
            label="statistic")  # fmt: skip
    ax.plot(at, [_finite(w.threshold) for w in windows], drawstyle="steps-post", color="#333",
            label="alarm threshold")  # fmt: skip
    if any(w.exit_threshold is not None for w in windows):
        ax.plot(at, [_finite(w.exit_threshold) for w in windows], drawstyle="steps-post",
                color="#333", linestyle=":", label="exit threshold")  # fmt: skip
    alarms = [w for w in windows if w.alarm]
    if alarms:
        ax.scatter([w.closed_at for w in alarms], [_finite(w.statistic) for w in alarms],
                   color=_ALARM, zorder=3, label=f"in alarm ({len(alarms)})")  # fmt: skip
    ax.set_title(f"{windows[-1].signal}: {len(windows)} windows")
    ax.set_ylabel(windows[-1].test)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=8)


def _shares_plot(fig: Any, window: WindowResult) -> None:
    import numpy as np

    ax = fig.add_subplot()
    x = np.arange(len(window.bins))
    if len(window.bins) > MAX_LABELED_BINS:
        ax.plot(x, window.reference_shares, color=_REFERENCE, label="reference")
        ax.plot(x, window.live_shares, color=_LIVE, label="live")
        ax.set_xlabel(f"{len(window.bins)} bins")
    else:
        width = 0.4
        ax.bar(x - width / 2, window.reference_shares, width, color=_REFERENCE, label="reference")
        ax.bar(x + width / 2, window.live_shares, width, color=_LIVE, label="live")
        ax.set_xticks(x, window.bins, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share")
    ax.set_title(f"latest window: {window.window:,} records to {_when(window.closed_at)}",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=8)


def _quality_plot(fig: Any, windows: list[QualityWindow]) -> None:
    at = [w.started_at for w in windows]
    for ax, name in zip(fig.subplots(1, 2), ("f1", "roc_auc"), strict=True):
        estimated = [_finite(_figure(w.estimated, name)) for w in windows]
        realized = [_finite(_figure(w.realized, name)) for w in windows]
        ax.plot(at, estimated, marker=".", linestyle="--", color=_REFERENCE, label="estimated")
        ax.plot(at, realized, marker="o", color=_LIVE, label="realized")
        ax.set_title(name)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.legend(fontsize=8)
