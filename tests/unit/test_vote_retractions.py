"""Retractions of reviewers' votes: the record, the indexer's deletes, the live label after one.

In process, on a SQLite store: the indexer and the live-label stream get records as the
consumer loop hands them over. Through the real broker: tests/integration/test_retractions.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson
import pytest
from kafka import TopicPartition

from mlcycle.collector.indexer import Indexer
from mlcycle.common.kafka.consumer import ConsumedRecord
from mlcycle.common.settings import LabelerSettings, TopicNames
from mlcycle.common.store import COMMENTS, VOTES, Store
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.comments import Comment, HumanLabel, Vote
from mlcycle.contracts.messages import InvalidRecord
from mlcycle.contracts.repositories.labels import Labels
from mlcycle.contracts.retractions import VoteRetraction, decode_reviewed
from mlcycle.labeler.stream import LabelStream

TOPICS = TopicNames()


def _human(item: str = "c1", who: str = "rita", label: int = 1) -> Vote:
    return HumanLabel(item_id=item, label=label, reviewer=who).to_vote()


def _record(topic: str, message: tuple[str, bytes], offset: int) -> ConsumedRecord:
    key, value = message
    return ConsumedRecord(topic, 0, offset, key, value, 1_700_000_000_000, ())


def _reviewed(*records: Vote | VoteRetraction, start: int = 0) -> list[ConsumedRecord]:
    return [
        _record(TOPICS.votes_reviewed, r.to_message(), start + n) for n, r in enumerate(records)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = SqliteStore(tmp_path / "store.sqlite")
    yield store
    store.close()


def test_a_retraction_names_one_reviewer_vote_by_its_id() -> None:
    vote = _human()
    retraction = VoteRetraction.of(vote)
    assert retraction.retracts == vote.id == "toxicity:c1:human:rita"
    assert decode_reviewed(retraction.to_message()[1]) == retraction
    assert decode_reviewed(vote.to_message()[1]) == vote
    assert retraction.to_message()[0] == vote.key  # the vote's partition


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"retracts": "toxicity:c1:w1", "item_id": "c1", "annotator_id": "w1"}, "reviewer"),
        (
            {"retracts": "toxicity:c2:human:rita", "item_id": "c1", "annotator_id": "human:rita"},
            "id",
        ),
        ({"retracts": "x", "item_id": "c1", "annotator_id": "human:r", "extra": 1}, "extra"),
        ({"retracts": "toxicity:c1:human:r"}, "item_id"),
    ],
)
def test_a_malformed_retraction_is_invalid_and_says_why(value: dict, named: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        decode_reviewed(orjson.dumps(value))
    assert named in str(raised.value)
    assert raised.value.reason == "schema"


def test_the_indexer_deletes_a_retracted_vote_and_dead_letters_a_malformed_retraction(
    store: Store,
) -> None:
    indexer = Indexer(TOPICS, store)
    kept, undone = _human("c1"), _human("c2")
    assert indexer(_reviewed(kept, undone)) == []
    assert store.count(VOTES) == 2
    bad = _record(TOPICS.votes_reviewed, ("c3", b'{"retracts": "toxicity:c3:w9"}'), 9)
    failures = indexer([*_reviewed(VoteRetraction.of(undone), start=2), bad])
    assert [failure.record for failure in failures] == [bad]
    assert "invalid record" in failures[0].error
    assert [doc["id"] for doc in store.scan(VOTES)] == [kept.id]
    # Redelivered (at least once): nothing changes.
    assert indexer(_reviewed(VoteRetraction.of(undone), start=2)) == []
    assert [doc["id"] for doc in store.scan(VOTES)] == [kept.id]


def test_in_one_batch_the_last_record_of_a_vote_decides(store: Store) -> None:
    indexer = Indexer(TOPICS, store)
    first, second = _human("c1"), _human("c2")
    # c1: labeled then undone; c2: labeled, undone, labeled again (with another class).
    relabeled = _human("c2", label=0)
    batch = _reviewed(first, second, VoteRetraction.of(first), VoteRetraction.of(second), relabeled)
    assert indexer(batch) == []
    assert [(doc["id"], doc["label"]) for doc in store.scan(VOTES)] == [(relabeled.id, 0)]


class _StoredAlready:
    """The indexer's progress as the stream sees it in process: always past what it read."""

    def wait_past(self, needed: Mapping[TopicPartition, int], timeout_s: float) -> None:
        return None

    def committed_by(self, group_id: str) -> dict[TopicPartition, int]:
        return {}


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[str, bytes]]] = []

    def send_batch(self, topic: str, items, timeout_s: float = 30.0) -> int:  # noqa: ANN001
        batch = list(items)
        self.sent += [(topic, item) for item in batch]
        return len(batch)


def test_the_live_label_forgets_a_retracted_reviewer_vote(store: Store) -> None:
    store.upsert(COMMENTS, [Comment(id="c1", text="some text").to_document()])
    crowd = [Vote(item_id="c1", annotator_id=f"w{k}", label=0) for k in range(3)]
    store.upsert(VOTES, [vote.to_document() for vote in crowd])
    producer = _Producer()
    stream = LabelStream(LabelerSettings(), TOPICS, store, producer, _StoredAlready())  # type: ignore[arg-type]
    indexer = Indexer(TOPICS, store)
    live = Labels(store)

    labeled = _reviewed(_human("c1", label=1))
    indexer(labeled), stream(labeled)
    (label,) = live.scan()
    assert label.label == 1 and label.provenance.humans == ["rita"]

    undone = _reviewed(VoteRetraction.of(_human("c1", label=1)), start=1)
    indexer(undone), stream(undone)
    (label,) = live.scan()
    assert label.label == 0 and label.provenance.humans == []
    assert label.n_votes == 3
