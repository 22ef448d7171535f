"""The behavioural suite: the shipped cases, loading and its errors, pass rates, the gate."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from mlcycle.common.errors import InvalidInput
from mlcycle.common.settings import CHECKOUT_SUITE
from mlcycle.evaluation.behaviour import (
    BehaviourSuite,
    SuiteError,
    load_suite,
    rates_of,
    recorded_summary,
    regressions,
    run_suite,
    threshold_scorer,
)
from mlcycle.featurization.held_out import HeldOutTexts, normalise_text
from mlcycle.trainer.blessing import BehaviourCheck, InfraCheck, ProductionScore, decide
from mlcycle.trainer.stages.behaviour import threshold_of

pytestmark = pytest.mark.unit

REQUIRED = {
    "identity_neutral",
    "identity_positive",
    "negated_hate",
    "counter_speech",
    "profanity_untargeted",
    "threats",
    "dehumanisation",
    "leet_speak",
    "spaced_letters",
    "character_swaps",
    "questions",
    "opinions_civil",
    "benign_chat",
    "direct_insults",
    "identity_attacks",
    "compliments",
}


def write(folder: Path, name: str, cases: object, description: str = "what it tests") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    doc = {"capability": name, "description": description, "cases": cases}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def case(text: str, expected: str = "toxic") -> dict[str, str]:
    return {"text": text, "expected": expected}


def small_suite(folder: Path) -> BehaviourSuite:
    write(folder, "insults", [case("you idiot"), case("you moron"), case("what a loser")])
    write(folder, "kind", [case("thank you", "not_toxic"), case("great work", "not_toxic")])
    return load_suite(folder)


def keyword_scorer(words: Sequence[str], calls: list[int] | None = None):  # noqa: ANN201
    def decide(texts: Sequence[str]) -> list[bool]:
        if calls is not None:
            calls.append(len(texts))
        return [any(w in t for w in words) for t in texts]

    return decide


# -- the shipped suite ---------------------------------------------------------------------------


def test_the_shipped_suite_is_large_balanced_and_covers_the_capabilities() -> None:
    suite = load_suite(CHECKOUT_SUITE)
    names = {c.capability for c in suite.capabilities}
    assert len(suite) >= 300 and len(names) >= 20
    assert names >= REQUIRED
    labels = Counter(case.expected for c in suite.capabilities for case in c.cases)
    assert abs(labels["toxic"] - labels["not_toxic"]) <= 0.1 * len(suite)
    assert all(len(c.cases) >= 10 and len(c.description) > 20 for c in suite.capabilities)
    # One file per capability, named after it.
    assert sorted(p.stem for p in CHECKOUT_SUITE.glob("*.json")) == sorted(names)


# -- loading and its errors ----------------------------------------------------------------------


def test_a_suite_loads_in_file_order_with_a_content_digest(tmp_path: Path) -> None:
    suite = small_suite(tmp_path / "a")
    assert [c.capability for c in suite.capabilities] == ["insults", "kind"]
    assert len(suite) == 5 and suite.texts()[0] == "you idiot"
    # Descriptions do not change the digest; a label does.
    write(tmp_path / "b", "insults", [case("you idiot"), case("you moron"), case("what a loser")])
    write(
        tmp_path / "b",
        "kind",
        [case("thank you", "not_toxic"), case("great work", "not_toxic")],
        description="something else",
    )
    assert load_suite(tmp_path / "b").digest == suite.digest
    write(tmp_path / "b", "kind", [case("thank you", "toxic"), case("great work", "not_toxic")])
    assert load_suite(tmp_path / "b").digest != suite.digest


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"capability": "x", "cases": [', "not valid JSON: .* at line 1"),
        (
            json.dumps({"capability": "bad", "description": "d", "cases": [case("a", "rude")]}),
            r"cases\.0\.expected: Input should be 'toxic' or 'not_toxic'",
        ),
        (
            json.dumps({"capability": "bad", "description": "d", "cases": [{"text": "a"}]}),
            r"cases\.0\.expected: Field required",
        ),
        (json.dumps({"capability": "bad", "description": "d", "cases": []}), "cases: List should"),
        (
            json.dumps({"capability": "bad", "description": "d", "cases": [case("   ")]}),
            "may not be blank",
        ),
        (json.dumps({"capability": "bad", "cases": [case("a")]}), "description: Field required"),
        (
            json.dumps(
                {
                    "capability": "bad",
                    "description": "d",
                    "cases": [case("you idiot"), case("You  IDIOT ")],
                }
            ),
            "1 duplicate case text.* in capability 'bad'",
        ),
        (
            json.dumps({"capability": "other", "description": "d", "cases": [case("a")]}),
            "the file must be called other.json",
        ),
    ],
)
def test_a_bad_capability_file_is_named_with_its_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    small_suite(tmp_path)
    (tmp_path / "bad.json").write_text(content, encoding="utf-8")
    with pytest.raises(SuiteError, match=message) as caught:
        load_suite(tmp_path)
    assert str(tmp_path / "bad.json") in caught.value.message
    assert isinstance(caught.value, InvalidInput)  # a 4xx wherever it surfaces


def test_a_text_in_two_capabilities_an_empty_or_missing_folder_are_refused(tmp_path: Path) -> None:
    small_suite(tmp_path)
    write(tmp_path, "more", [case("What a  LOSER")])
    with pytest.raises(SuiteError, match="duplicate case text.* in the suite: 'What a  LOSER'"):
        load_suite(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SuiteError, match="no capability files"):
        load_suite(tmp_path / "empty")
    with pytest.raises(SuiteError, match="no such suite folder"):
        load_suite(tmp_path / "missing")


def test_held_out_texts_match_up_to_capitals_and_spacing() -> None:
    held = HeldOutTexts(["You are an  idiot"])
    assert "you are an idiot" in held and " YOU ARE\tAN IDIOT\n" in held
    assert "you are an 1d10t" not in held and len(held) == 1
    assert normalise_text("  A\n b ") == "a b"


# -- scoring -------------------------------------------------------------------------------------


def test_pass_rates_per_capability_overall_and_worst(tmp_path: Path) -> None:
    suite = small_suite(tmp_path)
    calls: list[int] = []
    # Catches "idiot" and "moron" but not "loser"; calls "great work" toxic by mistake.
    result = run_suite(suite, keyword_scorer(["idiot", "moron", "great"], calls), batch=2)
    assert calls == [2, 2, 1]
    assert result.rates() == {"insults": pytest.approx(2 / 3), "kind": 0.5}
    assert result.passed == 3 and result.pass_rate == pytest.approx(3 / 5)
    assert result.worst.name == "kind"
    assert [f.text for f in result.worst.failures()] == ["great work"]
    summary = result.summary().model_dump()
    assert summary["suite_digest"] == suite.digest and summary["worst_capability"] == "kind"
    assert summary["capabilities"]["insults"] == {"cases": 3, "passed": 2, "rate": 0.6667}
    assert "idiot" not in json.dumps(summary)


def test_a_scorer_that_answers_the_wrong_number_of_labels_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="answered 1 labels for 5 texts"):
        run_suite(small_suite(tmp_path), lambda texts: [True])


def test_the_threshold_scorer_labels_like_serving_does() -> None:
    scores = {"a": 0.3, "b": 0.29999, "c": 0.9}
    decide = threshold_scorer(lambda texts: [scores[t] for t in texts], 0.3)
    assert decide(["a", "b", "c"]) == [True, False, True]
    assert threshold_of({"threshold": 0.25}) == 0.25
    assert threshold_of({"threshold": {"value": 0.4, "why": "prior"}}) == 0.4
    assert threshold_of({}) == 0.5


# -- the gate ------------------------------------------------------------------------------------


def test_regressions_are_drops_beyond_the_margin_on_shared_capabilities() -> None:
    production = {"threats": 0.9, "negation": 0.8, "questions": 0.7, "gone": 1.0}
    candidate = {"threats": 0.85, "negation": 0.6, "questions": 0.5, "new": 0.0}
    lost = regressions(candidate, production, margin=0.05)
    assert [(r.capability, round(r.drop, 2)) for r in lost] == [
        ("negation", 0.2),
        ("questions", 0.2),
    ]
    assert regressions(candidate, production, margin=0.2) == []  # a drop of the margin is allowed
    assert regressions(candidate, production, margin=0.19)[0].describe() == "negation 0.80 -> 0.60"


def test_recorded_rates_count_only_for_the_same_suite(tmp_path: Path) -> None:
    suite = small_suite(tmp_path)
    recorded = json.loads(run_suite(suite, keyword_scorer(["idiot"])).summary().model_dump_json())
    summary = recorded_summary(recorded, suite.digest)
    assert summary is not None and rates_of(summary) == {"insults": 0.3333, "kind": 1.0}
    assert recorded_summary(recorded, "another suite") is None
    assert recorded_summary(None, suite.digest) is None
    assert recorded_summary({"suite_digest": suite.digest}, suite.digest) is None


PRODUCTION = ProductionScore(3, 0.90, "re-scored on this dev split")
PASSED = InfraCheck(True, "served and answered like training")


def check(candidate: dict[str, float], margin: float = 0.05) -> BehaviourCheck:
    production = {"threats": 0.9, "negated_hate": 0.8}
    lost = tuple(regressions(candidate, production, margin))
    return BehaviourCheck(margin, 0.8, "production v3's rates recorded in its metadata", lost, 0.85)


def test_a_candidate_that_regresses_on_one_capability_is_refused_whatever_its_metric() -> None:
    behaviour = check({"threats": 0.95, "negated_hate": 0.6})
    decision = decide("roc_auc", 0.99, 0.0, PASSED, PRODUCTION, behaviour)
    assert not decision.blessed
    assert "loses more than 0.05 against production on negated_hate 0.80 -> 0.60" in (
        decision.reason
    )
    facts = decision.facts.as_dict()
    assert facts["behaviour"]["regressions"] == {
        "negated_hate": {"production": 0.8, "candidate": 0.6}
    }
    assert facts["compared_to"] == 3


def test_a_candidate_within_the_margin_is_judged_on_its_metric() -> None:
    behaviour = check({"threats": 0.86, "negated_hate": 0.75})
    decision = decide("roc_auc", 0.95, 0.0, PASSED, PRODUCTION, behaviour)
    assert decision.blessed
    assert "behavioural suite 80.0% passed" in decision.reason
    assert decision.facts.as_dict()["behaviour"]["regressions"] == {}
    worse = decide("roc_auc", 0.85, 0.0, PASSED, PRODUCTION, behaviour)
    assert not worse.blessed and "does not beat" in worse.reason


def test_a_skipped_comparison_says_why_and_does_not_gate() -> None:
    skipped = BehaviourCheck(0.05, 0.7, "comparison with production v3 skipped: it is gone")
    decision = decide("roc_auc", 0.95, 0.0, PASSED, PRODUCTION, skipped)
    assert decision.blessed and "skipped: it is gone" in decision.reason


def test_the_check_commands_gate_names_each_minimum_missed(tmp_path: Path) -> None:
    from rich.console import Console

    from mlcycle.cli.checking import check_document, check_table, overall_line, shortfalls

    result = run_suite(small_suite(tmp_path), keyword_scorer(["idiot", "moron", "great"]))
    assert shortfalls(result, None, None) == []
    assert shortfalls(result, 0.6, 0.5) == []  # at the minimum is enough
    assert shortfalls(result, 0.7, 0.6) == [
        "overall pass rate 0.600 < 0.7",
        "kind 0.500 < 0.6",
    ]
    document = check_document(result, [4])
    assert document["model_versions"] == [4] and document["failures"] == {
        "insults": ["what a loser"],
        "kind": ["great work"],
    }
    console = Console(record=True, width=120)
    console.print(check_table(result, [4]))
    text = console.export_text()
    assert "model v4" in text and "66.7%" in text
    assert overall_line(result) == "overall: 3/5 passed (60.0%); worst capability: kind (50.0%)"
