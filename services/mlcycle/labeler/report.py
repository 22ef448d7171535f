"""The diagnostics report of a label run, for people: rich tables and one self-contained HTML page.

Both read a :class:`~mlcycle.contracts.label_diagnostics.DiagnosticsReport`, as
:func:`mlcycle.labeler.diagnostics.run_diagnostics` makes it or as a run's JSON
carries it.
The HTML page carries its CSS and its plots (PNG, base64) inline and links
to nothing, so it can be mailed or archived as one file. Every string from
the report is escaped: item texts and voter ids are user content.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from rich.console import Console
from rich.table import Table

from mlcycle.common.figures import inline_figure
from mlcycle.contracts.label_diagnostics import (
    Calibration,
    ConflictMatrix,
    DiagnosticsReport,
    LfErrorSummary,
    LfStats,
    VoterStats,
    WorkerSummary,
)

if TYPE_CHECKING:  # matplotlib loads only when a page with plots is written
    from matplotlib.figure import Figure

D = TypeVar("D")

NONE = "–"
# Cells of the heatmap beyond which the numbers no longer fit inside the squares.
_MAX_ANNOTATED = 25


# --------------------------------------------------------------------------- terminal


def as_report(report: DiagnosticsReport | Mapping[str, Any]) -> DiagnosticsReport:
    """The report itself, or read from a run's JSON (``GET /v1/label-runs/{id}``)."""
    if isinstance(report, DiagnosticsReport):
        return report
    return DiagnosticsReport.model_validate(report)


def render_table(report: DiagnosticsReport, console: Console, *, max_workers: int = 20) -> None:
    """Print the summary, the labeling functions, the humans and the top workers to ``console``."""
    console.print(_summary_table(report))
    lfs = report.labeling_functions
    table = Table(title="Labeling functions", title_justify="left")
    for column in ("LF", "votes", "coverage", "overlap", "conflict", "accuracy", "n_gold"):
        table.add_column(column, justify="left" if column == "LF" else "right")
    table.add_column("errors", overflow="fold")
    for lf in lfs:
        table.add_row(*_voter_cells(lf), _errors_text(lf.errors))
    if not lfs:
        table.caption = "no labeling function voted"
    console.print(table)
    if report.humans:
        console.print(_voters_table("Human reviewers", report.humans))
    workers = report.workers.top
    if workers:
        shown = workers[:max_workers]
        title = f"Top {len(shown)} crowd workers by votes"
        console.print(_voters_table(title, shown))


def _summary_pairs(report: DiagnosticsReport) -> list[tuple[str, str]]:
    totals, workers = report.totals, report.workers
    return [
        ("items", _int(totals.items)),
        ("votes", _int(totals.votes)),
        ("labeling functions", _int(totals.voters.get("lf"))),
        ("crowd workers", _int(workers.count)),
        ("human reviewers", _int(totals.voters.get("human"))),
        ("gold items", _gold_text(report.gold.items, report.gold.min_votes)),
        ("median votes per worker", _num(workers.median_votes)),
        ("median worker accuracy", _pct(workers.median_accuracy)),
        ("pooled worker accuracy", _pct(workers.pooled_accuracy)),
        ("calibration error (ECE)", _num(report.calibration.ece, 4)),
    ]


def _summary_table(report: DiagnosticsReport) -> Table:
    table = Table(title="Label run diagnostics", title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in _summary_pairs(report):
        table.add_row(name, value)
    return table


def _voters_table(title: str, voters: list[VoterStats]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("voter", "votes", "coverage", "overlap", "conflict", "accuracy", "n_gold"):
        table.add_column(column, justify="left" if column == "voter" else "right")
    for voter in voters:
        table.add_row(*_voter_cells(voter))
    return table


def _voter_cells(voter: VoterStats) -> list[str]:
    return [
        voter.name or voter.voter_id,
        _int(voter.n_votes),
        _pct(voter.coverage),
        _pct(voter.overlap),
        _pct(voter.conflict),
        _pct(voter.accuracy),
        _int(voter.n_gold),
    ]


# --------------------------------------------------------------------------- HTML


def write_html(report: DiagnosticsReport | Mapping[str, Any], path: Path, *, title: str) -> Path:
    """Write the report as one self-contained HTML page at ``path`` and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, title=title), encoding="utf-8")
    return path


def render_html(report: DiagnosticsReport | Mapping[str, Any], *, title: str) -> str:
    """The report as one self-contained HTML page (the console serves it as it is)."""
    report = as_report(report)
    lfs = report.labeling_functions
    workers = report.workers
    calibration = report.calibration
    matrix = report.conflict_matrix
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _html_summary(report),
        "<h2>Coverage</h2>",
        _figure(_coverage_plot, lfs, alt="coverage per labeling function", plot="coverage")
        if lfs
        else "<p class='note'>No labeling function in this run.</p>",
        "<h2>Conflicts between labeling functions</h2>",
        _figure(_conflict_plot, matrix, alt="pairwise conflict heatmap", plot="conflicts")
        if matrix.voters
        else "<p class='note'>No labeling function in this run.</p>",
        "<h2>Calibration of the soft labels</h2>",
        _figure(_calibration_plot, calibration, alt="reliability diagram", plot="calibration")
        if calibration.bins
        else "<p class='note'>No gold item to calibrate against.</p>",
        "<h2>Labeling functions</h2>",
        _html_lf_table(lfs),
        _html_wrong_samples(lfs),
        "<h2>Human reviewers</h2>",
        _html_voters(report.humans, empty="No human reviewer voted."),
        "<h2>Crowd workers</h2>",
        _html_worker_summary(workers),
        _html_voters(workers.top, empty="No crowd worker voted."),
        "</body></html>",
    ]
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f5f5f5}
td.text{text-align:left;white-space:pre-wrap;max-width:50rem}
img{max-width:100%;height:auto}.note{color:#777}
details{margin:.3rem 0}summary{cursor:pointer}
"""


def _html_summary(report: DiagnosticsReport) -> str:
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(value)}</td></tr>"
        for name, value in _summary_pairs(report)
    )
    return f"<table class='summary'>{rows}</table>"


def _html_lf_table(lfs: list[LfStats]) -> str:
    if not lfs:
        return "<p class='note'>No labeling function in this run.</p>"
    head = "".join(
        f"<th>{h}</th>"
        for h in ("LF", "votes", "coverage", "overlap", "conflict", "accuracy", "n_gold", "errors")
    )
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{escape(cell)}</td>" for cell in _voter_cells(lf))
        + f"<td class='text'>{escape(_errors_text(lf.errors))}</td></tr>"
        for lf in lfs
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def _html_wrong_samples(lfs: list[LfStats]) -> str:
    parts = ["<h3>Items each function got wrong (a sample)</h3>"]
    for lf in lfs:
        samples = lf.wrong_samples
        name = escape(lf.name or lf.voter_id)
        if not samples:
            parts.append(f"<details><summary>{name}: no wrong item on gold</summary></details>")
            continue
        rows = "".join(
            f"<tr><td>{escape(s.item_id)}</td><td>{_int(s.vote)}</td>"
            f"<td>{_int(s.gold)}</td><td class='text'>{escape(s.text)}"
            "</td></tr>"
            for s in samples
        )
        parts.append(
            f"<details><summary>{name}: {len(samples)} sample(s)</summary><table>"
            f"<tr><th>item</th><th>vote</th><th>gold</th><th>text</th></tr>{rows}</table></details>"
        )
    return "".join(parts)


def _html_voters(voters: list[VoterStats], *, empty: str) -> str:
    if not voters:
        return f"<p class='note'>{escape(empty)}</p>"
    head = "".join(
        f"<th>{h}</th>"
        for h in ("voter", "votes", "coverage", "overlap", "conflict", "accuracy", "n_gold")
    )
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in _voter_cells(v)) + "</tr>"
        for v in voters
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def _html_worker_summary(workers: WorkerSummary) -> str:
    figures = [
        ("workers", _int(workers.count)),
        ("votes", _int(workers.votes)),
        ("median votes per worker", _num(workers.median_votes)),
        ("workers scored on gold", _int(workers.with_gold)),
        ("median accuracy (leave-one-out)", _pct(workers.median_accuracy)),
        ("pooled accuracy (leave-one-out)", _pct(workers.pooled_accuracy)),
    ]
    rows = "".join(f"<tr><td>{escape(n)}</td><td>{escape(v)}</td></tr>" for n, v in figures)
    shown = len(workers.top)
    caption = f"<p>The {shown} workers with most votes:</p>" if shown else ""
    return f"<table>{rows}</table>{caption}"


# --------------------------------------------------------------------------- plots


def _figure(draw: Callable[[Figure, D], None], data: D, *, alt: str, plot: str) -> str:
    return inline_figure(draw, data, alt=alt, plot=plot)


def _coverage_plot(fig: Figure, lfs: list[LfStats]) -> None:
    names = [lf.name or lf.voter_id for lf in lfs]
    coverage = [lf.coverage or 0.0 for lf in lfs]
    fig.set_figheight(max(2.0, 0.35 * len(lfs) + 1.2))
    ax = fig.subplots()
    positions = list(range(len(lfs)))
    bars = ax.barh(positions, coverage, color="#4c78a8")
    ax.set_yticks(positions, labels=names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1e-9, max(coverage)) * 1.15)
    ax.set_xlabel("coverage (share of items voted)")
    ax.bar_label(bars, labels=[f"{c:.1%}" for c in coverage], padding=3, fontsize=8)


def _conflict_plot(fig: Figure, matrix: ConflictMatrix) -> None:
    import matplotlib

    names = list(matrix.voters)
    values = np.array(
        [[math.nan if v is None else v for v in row] for row in matrix.values],
        dtype=float,
    ).reshape(len(names), len(names))
    size = max(3.5, 0.45 * len(names) + 2.5)
    fig.set_size_inches(size + 1.0, size)
    ax = fig.subplots()
    cmap = matplotlib.colormaps["Reds"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    fig.colorbar(image, ax=ax, label="share of shared items in disagreement")
    if len(names) <= _MAX_ANNOTATED:
        for i in range(len(names)):
            for j in range(len(names)):
                value = values[i, j]
                text = "n/a" if math.isnan(value) else f"{value:.2f}"
                color = "white" if not math.isnan(value) and value > 0.6 else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)


def _calibration_plot(fig: Figure, calibration: Calibration) -> None:
    bins = [b for b in calibration.bins if b.count]
    confidence = [b.confidence for b in bins]
    accuracy = [b.accuracy for b in bins]
    counts = [b.count for b in bins]
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle="--", color="#999999", label="perfect calibration")
    top.plot(confidence, accuracy, marker="o", color="#e45756", label="soft labels")
    top.set_ylabel("accuracy on gold")
    top.set_ylim(0, 1.02)
    ece = calibration.ece
    top.set_title(f"Reliability (ECE = {ece:.4f})" if ece is not None else "Reliability")
    top.legend(loc="upper left")
    lefts = [b.lower for b in bins]  # the bins' own extent
    widths = [0.9 * (b.upper - b.lower) for b in bins]
    bottom.bar(lefts, counts, width=widths, align="edge", color="#4c78a8")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("items")
    bottom.set_xlim(0, 1.0)


# --------------------------------------------------------------------------- formatting


def _pct(value: float | None) -> str:
    return NONE if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value:,.{digits}f}"


def _int(value: int | None) -> str:
    return NONE if value is None else f"{int(value):,}"


def _gold_text(items: int, min_votes: int | None) -> str:
    if min_votes is None:
        return _int(items)
    return f"{_int(items)} (≥ {min_votes} crowd votes)"


def _errors_text(errors: LfErrorSummary | None) -> str:
    """An LF's errors in one line: ``count × first message``."""
    if errors is None:
        return ""
    text = f"{errors.count} × {errors.message}"
    return text if len(text) <= 160 else text[:159] + "…"
