"""The diagnostics report rendered for people: rich tables and a self-contained HTML page."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from mlcycle.contracts.label_diagnostics import DiagnosticsReport
from mlcycle.labeler.diagnostics import gold_labels, run_diagnostics
from mlcycle.labeler.report import as_report, render_table, write_html
from mlcycle.labeler.votes import VoteMatrix

SCRIPT = "<script>alert('x')</script> you are & always were"


@pytest.fixture
def report() -> DiagnosticsReport:
    # Items a..c have 3 crowd votes each; lf:caps is wrong on a, whose text is hostile HTML.
    triplets = [
        ("a", "w1", 0), ("a", "w2", 0), ("a", "<img src=x>", 1), ("a", "lf:caps", 1),
        ("b", "w1", 1), ("b", "w2", 1), ("b", "<img src=x>", 1), ("b", "lf:caps", 1),
        ("c", "w1", 0), ("c", "w2", 0), ("c", "<img src=x>", 0), ("c", "lf:slurs", 0),
        ("d", "w1", 1), ("d", "lf:caps", 1), ("d", "lf:slurs", 0), ("d", "human:ann", 1),
    ]  # fmt: skip
    votes = VoteMatrix.from_triplets(triplets, 2)
    gold = gold_labels(votes, min_votes=3)
    probs = np.array([[0.7, 0.3], [0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])
    return run_diagnostics(
        votes,
        probs=probs,
        gold=gold,
        texts={"a": SCRIPT, "b": "fine", "c": "ok", "d": "hm"},
        lf_errors={"slurs": {"count": 1, "message": "KeyError: <lang>", "items": [3]}},
        min_votes=3,
    )


def test_html_is_self_contained_with_three_plots_and_escaped_text(
    report: DiagnosticsReport, tmp_path: Path
) -> None:
    pyplot_loaded = "matplotlib.pyplot" in sys.modules
    path = write_html(report, tmp_path / "reports" / "run.html", title="run <1>")
    assert path == tmp_path / "reports" / "run.html"
    page = path.read_text(encoding="utf-8")

    plots = re.findall(
        r"<figure data-plot='(\w+)'><img alt='[^']*' src='data:image/png;base64,", page
    )
    assert plots == ["coverage", "conflicts", "calibration"]
    assert "<script" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; you are &amp; always were" in page
    assert "&lt;img src=x&gt;" in page  # a crowd worker id is user content too
    assert "KeyError: &lt;lang&gt;" in page
    assert "<title>run &lt;1&gt;</title>" in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)  # nothing fetched from a network
    for section in ("Labeling functions", "Human reviewers", "Crowd workers", "Calibration"):
        assert section in page
    # Figures are built without pyplot, so no global backend or figure registry is touched.
    assert pyplot_loaded or "matplotlib.pyplot" not in sys.modules


def test_html_of_a_run_with_nothing_to_plot(tmp_path: Path) -> None:
    votes = VoteMatrix.from_triplets([("a", "w1", 1)], 2)
    empty = run_diagnostics(votes, probs=np.array([[0.5, 0.5]]), gold=np.array([-1]), texts={})
    page = write_html(empty, tmp_path / "empty.html", title="empty").read_text(encoding="utf-8")
    assert "data:image/png" not in page
    assert "No labeling function in this run." in page
    assert "No gold item to calibrate against." in page


def test_table_renders_to_a_console(report: DiagnosticsReport) -> None:
    console = Console(record=True, width=160, color_system=None)
    render_table(report, console)
    text = console.export_text()
    for expected in ("Label run diagnostics", "Labeling functions", "caps", "slurs", "ann"):
        assert expected in text
    assert "Top 3 crowd workers by votes" in text
    assert "1 × KeyError: <lang>" in text
    # caps votes a, b, d (3 of 4 items) and is right on b only among the gold items a, b.
    caps = next(line for line in text.splitlines() if "caps" in line)
    assert "75.0%" in caps and "50.0%" in caps
    assert re.search(r"gold items\s+│?\s*3 \(≥ 3 crowd votes\)", text)


def test_table_tolerates_a_sparse_report() -> None:
    console = Console(record=True, width=120, color_system=None)
    render_table(as_report({"labeling_functions": [], "workers": {}, "calibration": {}}), console)
    assert "no labeling function voted" in console.export_text()
