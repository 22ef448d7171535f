"""The demo's own arithmetic and summary: label agreement, the load driver's figures, the job's."""

from __future__ import annotations

import asyncio

import pytest

from mlcycle.clients.trainer import JobResult
from mlcycle.local.demo_records import label_agreement
from mlcycle.local.demo_report import judgement_rows
from mlcycle.local.demo_stages import demo_text
from mlcycle.local.loadtest import HIT, MISS, Run, drive


def test_agreement_and_kappa_of_a_known_table() -> None:
    # 100 items: 40 both 1, 45 both 0, 10 first-only 1, 5 second-only 1.
    first, second = {}, {}
    for i in range(100):
        a, b = (1, 1) if i < 40 else (0, 0) if i < 85 else (1, 0) if i < 95 else (0, 1)
        first[f"c{i}"], second[f"c{i}"] = a, b
    second["only-second"] = 1
    figures = label_agreement(first, second)

    assert figures.items == 100 and figures.only_second == 1 and figures.only_first == 0
    assert figures.agreement == pytest.approx(0.85)
    # expected by chance: 0.5 * 0.45 + 0.5 * 0.55 = 0.5, so kappa = (0.85 - 0.5) / 0.5
    assert figures.kappa == pytest.approx(0.7)
    assert figures.pairs == {"0/0": 45, "0/1": 5, "1/0": 10, "1/1": 40}


def test_kappa_is_undefined_when_both_put_everything_in_one_class() -> None:
    figures = label_agreement({"a": 0, "b": 0}, {"a": 0, "b": 0})
    assert figures.agreement == 1.0 and figures.kappa is None
    assert label_agreement({"a": 1}, {"b": 1}).agreement is None


def test_demo_texts_are_new_for_every_number_and_tag() -> None:
    texts = {demo_text(n, tag) for n in range(500) for tag in ("t1", "t2")}
    assert len(texts) == 1000


def test_drive_keeps_each_calls_outcome_for_percentiles_by_kind() -> None:
    async def call(i: int) -> str:
        await asyncio.sleep(0.001 if i % 2 == 0 else 0.02)
        return HIT if i % 2 == 0 else MISS

    ticks: list[tuple[float, int]] = []
    run = asyncio.run(drive(call, 4, 0.3, on_tick=lambda s, n: ticks.append((s, n))))

    assert len(run.latencies_ms) == len(run.outcomes) == run.count(HIT) + run.count(MISS)
    # Call numbers alternate kinds; a call still running at the deadline is the only skew.
    assert run.count(MISS) > 0 and abs(run.count(HIT) - run.count(MISS)) <= 4
    assert run.percentile(0.5, HIT) < 10 < run.percentile(0.5, MISS)
    assert run.percentile(0.5) <= run.percentile(0.99)
    assert run.rps == pytest.approx(len(run.latencies_ms) / run.seconds)
    assert ticks and ticks[-1][1] == len(run.latencies_ms)


def test_a_run_without_calls_has_no_percentile() -> None:
    run = Run([], 0.0)
    assert run.percentile(0.5) != run.percentile(0.5)  # NaN


def test_the_summary_names_the_served_threshold_and_the_behavioural_suite() -> None:
    capability = {"cases": 15, "passed": 6, "rate": 0.4}
    result = JobResult.model_validate(
        {
            "metric": "roc_auc",
            "dev": {"roc_auc": 0.97, "threshold": 0.5},
            "behaviour": {
                "suite_digest": "abc",
                "cases": 30,
                "pass_rate": 0.7,
                "worst_capability": "negated_hate",
                "worst_rate": 0.4,
                "capabilities": {"negated_hate": capability, "threats": capability},
            },
        }
    )
    rows = dict(judgement_rows(result))
    assert rows["served threshold (for the job's stated traffic)"] == "0.500"
    assert rows["behavioural suite (tests/behaviour)"] == "70.0% of 30; worst negated_hate 40%"
    assert judgement_rows(JobResult(metric="roc_auc")) == []
