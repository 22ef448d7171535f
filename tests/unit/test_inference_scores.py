"""The stored score: the same JSON on the stored comment and on ``scored.comments`` as the
stream wrote by hand before it was typed, read back leniently, attached keeping the comment."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from mlcycle.common.store import COMMENTS, Document
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.messages import decode_record
from mlcycle.contracts.repositories.scores import CommentScores
from mlcycle.contracts.scores import PREDICTION_FIELD, CommentScore, ScoredComment, utc_now

AT = datetime(2026, 11, 24, 10, 0, 5, 123000, tzinfo=UTC)
BINARY = {
    "score": 0.8125,
    "label": "1",
    "threshold": 0.5,
    "model_version": 3,
    "transform_version": "tf-0123456789abcdef",
}
MULTI = {
    "score": 0.625,
    "label": "hate",
    "threshold": None,
    "model_version": 2,
    "transform_version": "tf-0123456789abcdef",
    "probabilities": {"hate": 0.625, "offensive": 0.25, "neither": 0.125},
}


@pytest.mark.parametrize("prediction", [BINARY, MULTI], ids=["binary", "multi-class"])
def test_the_json_is_the_prediction_with_its_time(prediction: dict) -> None:
    score = CommentScore(**prediction, scored_at=AT)
    by_hand = {**prediction, "scored_at": "2026-11-24T10:00:05.123Z"}
    assert orjson.dumps(score.to_document()) == orjson.dumps(by_hand)
    key, value = score.to_message("c1")
    assert key == "c1"
    assert value == orjson.dumps({"id": "c1", **by_hand})
    event = decode_record(value, ScoredComment)
    assert event.key == "c1"
    assert CommentScore.model_validate(event.model_dump(exclude={"id"})) == score


def test_the_time_keeps_milliseconds_in_utc() -> None:
    now = utc_now()
    assert now.tzinfo is UTC and now.microsecond % 1000 == 0
    stamp = CommentScore(**BINARY, scored_at=now).to_document()["scored_at"]
    assert stamp.endswith("Z") and len(stamp) == len("2026-11-24T10:00:05.123Z")


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "0.8",
        {**BINARY, "model_version": "../1"},
        {**BINARY, "model_version": True},
        {**BINARY, "model_version": 0},
        {key: value for key, value in BINARY.items() if key != "score"},
    ],
)
def test_a_comment_without_a_usable_score_has_none(stored: object) -> None:
    document = {"id": "c1", "text": "hello"}
    if stored is not None:
        document[PREDICTION_FIELD] = stored
    assert CommentScore.on_comment(document) is None


def test_a_stored_score_is_read_back() -> None:
    document = {"id": "c1", PREDICTION_FIELD: {**BINARY, "scored_at": "2026-11-24T10:00:05.123Z"}}
    score = CommentScore.on_comment(document)
    assert score is not None and score.scored_at == AT and score.model_version == 3


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    yield store
    store.close()


def test_scores_are_attached_to_stored_comments_keeping_their_fields(store: SqliteStore) -> None:
    comment = {"id": "c1", "text": "hi", "source": "unit", "metadata": {"year": 2010}, "x": 1}
    store.upsert(COMMENTS, [comment])
    scores = CommentScores(store)
    first = CommentScore(**BINARY, scored_at=AT)
    assert scores.attach({"c1": first, "refused": first}) == 1
    stored = store.get(COMMENTS, "c1")
    assert {key: stored[key] for key in comment} == comment
    assert stored[PREDICTION_FIELD] == first.to_document()
    assert store.get(COMMENTS, "refused") is None
    assert scores.get("c1") == first
    assert scores.get("refused") is None

    newer = CommentScore(**{**BINARY, "model_version": 4}, scored_at=AT)
    scores.attach({"c1": newer})
    assert scores.get("c1") == newer


class IndexerWritesMeanwhile(SqliteStore):
    """A real store on which the indexer stores a newer version of ``c1`` mid-scoring.

    The newer version lands right after the scorer reads (if it reads) or right
    before it writes: the two moments a read-modify-write can lose it.
    """

    newer = {"id": "c1", "text": "edited", "source": "unit"}

    def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Document]:
        found = super().get_many(collection, ids)
        self.upsert(COMMENTS, [self.newer])
        return found

    def update_fields(self, collection: str, changes: Mapping[str, Mapping[str, Any]]) -> int:
        self.upsert(COMMENTS, [self.newer])
        return super().update_fields(collection, changes)


def test_a_score_never_reverts_a_newer_version_of_its_comment(tmp_path: Path) -> None:
    store = IndexerWritesMeanwhile(tmp_path / "store.sqlite3")
    try:
        SqliteStore.upsert(store, COMMENTS, [{"id": "c1", "text": "original", "source": "unit"}])
        score = CommentScore(**BINARY, scored_at=AT)
        assert CommentScores(store).attach({"c1": score}) == 1
        stored = SqliteStore.get(store, COMMENTS, "c1")
        assert stored == {**IndexerWritesMeanwhile.newer, PREDICTION_FIELD: score.to_document()}
    finally:
        store.close()
