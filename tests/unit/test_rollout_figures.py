"""A rollout's comparison as the CLI and the HTML reports show it: the same figures in both."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from mlcycle.cli.rollouts import print_comparison
from mlcycle.contracts.rollouts import (
    Comparison,
    Latency,
    QualityTest,
    Rollout,
    RolloutDecision,
    RolloutPolicy,
    RolloutView,
    ScoreDeltas,
    VersionFigures,
)
from mlcycle.local.demo_rollouts import Candidate, RolloutsRun
from mlcycle.local.demo_rollouts_report import rollout_section
from mlcycle.rollouts.figures import comparison_html, comparison_rows, rollouts_html

pytestmark = pytest.mark.unit


def comparison() -> Comparison:
    return Comparison(
        pair="production-shadow",
        production=VersionFigures(
            version=1, requests=500, errors=0, error_rate=0.0,
            latency=Latency(p50_ms=4.0, p99_ms=21.5), decisions=40, accuracy=0.9,
        ),
        candidate=VersionFigures(
            version=2, requests=498, errors=2, error_rate=0.004,
            latency=Latency(p50_ms=4.5, p99_ms=30.25), drift_alarms=["score_psi"],
            decisions=40, accuracy=0.525,
        ),
        pairs=498,
        agreement=0.507,
        score_correlation=0.042,
        correlated_pairs=450,
        score_delta=ScoreDeltas(mean=0.21, p05=-0.3, p50=0.2, p95=0.7, mean_abs=0.33),
        quality=QualityTest(difference=-0.375, lower=-0.6, upper=-0.15, margin=0.02,
                            alpha=0.05, verdict="worse"),
        evidence_age_s=0.8,
    )  # fmt: skip


def test_rows_hold_each_sides_figures() -> None:
    rows = {name: (production, candidate) for name, production, candidate in
            comparison_rows(comparison())}  # fmt: skip
    assert rows["scored"] == ("500", "498")
    assert rows["error rate"] == ("0.0000", "0.0040")
    assert rows["p99 ms"] == ("21.5", "30.2")
    assert rows["drift alarms"] == ("none", "score_psi")
    assert rows["realized accuracy"] == ("0.900", "0.525")


def test_the_terminal_and_the_page_show_the_same_figures() -> None:
    out = io.StringIO()
    print_comparison(Console(file=out, width=200), comparison())
    page = comparison_html(comparison())
    shown = ("498 paired comments", "0.507", "worse", "score_psi", "0.525", "30.2",
             "score correlation (logit) 0.042 over 450 pairs")  # fmt: skip
    for text in shown:
        assert text in out.getvalue()
        assert text in page


def test_the_demo_report_shows_the_comparison_its_last_decision_saw() -> None:
    decided = RolloutDecision(
        time="2026-12-07T08:00:05Z", action="rollback", phase="rolled_back", reason="worse",
        actor="rollout:r1", evidence=comparison(),
    )  # fmt: skip
    rollout = Rollout(
        id="r1", name="toxicity", candidate=2, baseline=1, policy=RolloutPolicy(),
        phase="rolled_back", status="finished", started_at="t0", updated_at="t1",
        decisions=[decided],
    )  # fmt: skip
    drill = Candidate("drill", 2, "rolled_back", rollout, 4.3, {1: 10})
    retrained = Candidate("retrained", None, "failed: refused", None, 0.0, {})
    run = RolloutsRun(retrained, drill, None, {}, 0)
    page = "".join(rollout_section(run))
    assert "rollback decision at 08:00:05" in page
    assert comparison_html(comparison()) in page


def test_the_rollouts_section_shows_each_rollout_and_a_running_ones_comparison() -> None:
    running = Rollout(
        id="r2", name="toxicity", candidate=3, baseline=1, policy=RolloutPolicy(),
        phase="canary", step=1, started_at="t0", updated_at="t1", trigger="retraining:x",
    )  # fmt: skip
    page = "".join(rollouts_html([RolloutView(rollout=running, comparison=comparison())]))
    assert "r2: model toxicity v3 against v1 · canary 25 % · running · trigger retraining:x" in page
    assert comparison_html(comparison()) in page
    assert "No rollout yet." in "".join(rollouts_html([]))
