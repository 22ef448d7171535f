"""A label run's computation on small hand-made corpora (no broker, no store)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from mlcycle.common.settings import load_settings
from mlcycle.contracts.comments import StoredComment
from mlcycle.contracts.label_runs import RunParams
from mlcycle.contracts.labels import Label, Provenance
from mlcycle.contracts.repositories.votes import CastVote
from mlcycle.labeler.aggregate import LEARNING_STRATEGIES
from mlcycle.labeler.labeling import (
    Corpus,
    ProvenanceIndex,
    compute,
    label_records,
    review_queue,
    summary,
)

LABELER = load_settings(gold_min_votes=3).labeler
NO_LFS = RunParams(strategy="majority", labeling_functions=[])


def corpus(*items: tuple[str, str]) -> Corpus:
    return Corpus.from_comments(StoredComment(id=i, text=t) for i, t in items)


def vote(item: str, worker: str, label: object) -> CastVote:
    return CastVote(item, worker, label)


def test_votes_out_of_range_and_for_unknown_items_are_counted_not_used() -> None:
    texts = corpus(("a", "fine"), ("b", "fine too"))
    votes = [
        vote("a", "w1", 1),
        vote("a", "w2", 1),
        vote("a", "w3", 7),  # not a class of a binary task
        vote("a", "w4", 0.5),  # a score, not a class
        vote("zzz", "w1", 1),  # its comment has not arrived
    ]
    labeling = compute(texts, votes, NO_LFS, LABELER)
    assert labeling.vote_counts.model_dump() == {
        "read": 5,
        "out_of_range": 2,
        "unknown_item": 1,
        "used": 2,
        "lf": 0,
    }
    assert labeling.result.labels.tolist() == [1, -1]  # b has no vote at all: unlabeled


def test_a_human_label_decides_under_majority() -> None:
    texts = corpus(("a", "text"))
    votes = [vote("a", f"w{i}", 1) for i in range(4)] + [vote("a", "human:ann", 0)]
    labeling = compute(texts, votes, NO_LFS, LABELER)
    assert labeling.result.labels.tolist() == [0]
    assert labeling.result.probs[0].tolist() == pytest.approx([0.99, 0.01])
    assert labeling.human_votes.tolist() == [1]
    assert labeling.crowd_votes.tolist() == [4]


@pytest.mark.parametrize("strategy", LEARNING_STRATEGIES)
def test_a_human_label_counts_as_a_trusted_voter_under_a_learning_strategy(strategy: str) -> None:
    # Three workers who are each wrong on a different third of the items.
    texts = corpus(*[(f"i{n}", "text") for n in range(30)])
    truth = [n % 2 for n in range(30)]
    votes = [
        vote(f"i{n}", f"w{k}", truth[n] if n % 3 != k else 1 - truth[n])
        for n in range(30)
        for k in range(3)
    ]
    # On i0 (truth 0) only w0 errs; flip w1 too, so the crowd says 1 by two votes to one.
    assert sorted(v.label for v in votes if v.item_id == "i0") == [0, 0, 1]
    votes = [v for v in votes if not (v.item_id == "i0" and v.annotator_id == "w1")]
    votes += [vote("i0", "w1", 1)]
    params = RunParams(strategy=strategy, labeling_functions=[])
    crowd_only = compute(texts, votes, params, LABELER)
    assert crowd_only.result.labels[0] == 1
    reviewed = compute(texts, [*votes, vote("i0", "human:ann", 0)], params, LABELER)
    assert reviewed.result.labels[0] == 0
    assert reviewed.result.probs[0, 0] > 0.9


def test_labeling_functions_label_items_without_crowd_votes() -> None:
    texts = corpus(
        ("a", "thanks for the citation, I agree with the source"),
        ("b", "you are a pathetic idiot"),
        ("c", "ok"),
    )
    labeling = compute(texts, [vote("c", "w1", 0)], RunParams(strategy="majority"), LABELER)
    assert labeling.result.labels.tolist() == [0, 1, 0]
    assert labeling.crowd_votes.tolist() == [0, 0, 1]
    stats = summary(labeling).model_dump()
    assert stats["items_with_only_lf_votes"] == 2
    assert stats["labeled"] == 3


def test_label_documents_carry_provenance_split_and_probabilities() -> None:
    texts = Corpus.from_comments(
        [
            StoredComment(id="a", text="you are a pathetic idiot", metadata={"split": "dev"}),
            StoredComment(id="b", text="x", metadata={}),
        ]
    )
    votes = [vote("a", "w1", 1), vote("a", "human:ann", 1)]
    params = RunParams(strategy="majority")
    labeling = compute(texts, votes, params, LABELER)
    labels = label_records(
        labeling,
        texts,
        range(2),
        run_id="lr-1",
        params=params,
        provenance=ProvenanceIndex(labeling.votes),
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    docs = [label.to_document() for label in labels]
    assert len(docs) == 1  # b: no vote, every labeling function abstained
    (doc,) = docs
    assert doc["id"] == "lr-1:a" and doc["split"] == "dev" and doc["label"] == 1
    assert doc["created_at"] == "2026-01-01T00:00:00+00:00"
    assert doc["n_votes"] == 2  # the crowd vote and the human one; LFs are not votes
    assert doc["provenance"]["crowd"] == ["w1"]
    assert doc["provenance"]["humans"] == ["ann"]
    assert "insult_second_person" in doc["provenance"]["labeling_functions"]
    assert sum(doc["probabilities"]) == pytest.approx(1.0)
    assert doc["probability"] == doc["probabilities"][1]


def test_summary_reports_gold_accuracy_next_to_the_majority_baseline() -> None:
    texts = corpus(*[(f"i{n}", "plain words") for n in range(10)])
    votes = [vote(f"i{n}", f"w{k}", int(n < 3)) for n in range(10) for k in range(3)]
    stats = summary(compute(texts, votes, RunParams(labeling_functions=[]), LABELER)).model_dump()
    assert stats["gold_items"] == 10
    assert stats["accuracy_on_gold"] == 1.0
    assert stats["baseline"]["accuracy_on_gold"] == 1.0
    assert stats["baseline"]["agreement_with_strategy"] == 1.0
    balance = stats["class_balance"]
    assert sum(n for split in balance.values() for n in split.values()) == 10
    assert sum(split["1"] for split in balance.values()) == 3


def test_review_queue_puts_uncertain_thinly_voted_items_first_and_skips_reviewed() -> None:
    texts = corpus(("sure", "a"), ("split2", "b"), ("split6", "c"), ("reviewed", "d"))
    votes = [vote("sure", f"w{k}", 1) for k in range(4)]
    votes += [vote("split2", "w1", 1), vote("split2", "w2", 0)]
    votes += [vote("split6", f"w{k}", k % 2) for k in range(6)]
    votes += [vote("reviewed", "w1", 1), vote("reviewed", "human:ann", 1)]
    labeling = compute(texts, votes, NO_LFS, LABELER)
    queue = [entry.model_dump() for entry in review_queue(labeling, texts, size=10)]
    assert [entry["item_id"] for entry in queue] == ["split2", "split6", "sure"]
    assert queue[0]["priority"] > queue[1]["priority"] > queue[2]["priority"] == 0.0
    assert len(review_queue(labeling, texts, size=1)) == 1


@pytest.mark.parametrize(
    ("old", "is_changed"),
    [
        (None, True),
        ({"label": 1, "split": "train", "probability": 0.9}, False),
        ({"label": 1, "split": "train", "probability": 0.9004}, False),
        ({"label": 0, "split": "train", "probability": 0.9}, True),
        ({"label": 1, "split": "dev", "probability": 0.9}, True),
        ({"label": 1, "split": "train", "probability": 0.7}, True),
    ],
)
def test_changed(old: dict | None, is_changed: bool) -> None:
    new = a_label(label=1, split="train", probability=0.9)
    assert new.changed_from(None if old is None else a_label(**old).decision) is is_changed


def a_label(label: int, split: str, probability: float) -> Label:
    return Label(
        id="lr-1:a",
        run="lr-1",
        item_id="a",
        task="toxicity",
        label=label,
        probability=probability,
        probabilities=[1 - probability, probability],
        method="majority",
        n_votes=1,
        provenance=Provenance(),
        split=split,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_unknown_labeling_function_names_are_refused() -> None:
    from mlcycle.common.errors import InvalidInput

    with pytest.raises(InvalidInput, match="nope"):
        compute(corpus(("a", "x")), [], RunParams(labeling_functions=["nope"]), LABELER)


def test_run_params_reject_unknown_fields_and_strategies() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        RunParams(strategy="snorkel")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        RunParams.model_validate({"strategy": "majority", "treshold": 0.4})
    assert np.isclose(RunParams(threshold=0.3).threshold, 0.3)
