"""The stream scorer's handler with an in-memory model server: scores stored and produced,
poison handed back, outages and a lagging indexer raised so that nothing is committed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import orjson
import pytest
from kafka import TopicPartition

from mlcycle.common.errors import Unavailable
from mlcycle.common.kafka.consumer import ConsumedRecord
from mlcycle.common.store import COMMENTS, Store
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.featurization.transform import Transform
from mlcycle.inference.stream import StreamScorer, wait_for_model
from tests.fixtures.inference import Rig, small_transform

TOPIC = "comments.raw"


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict]] = []

    def send_batch(self, topic: str, items: Iterable[tuple[str, bytes]]) -> int:
        batch = [(topic, key, orjson.loads(value)) for key, value in items]
        self.sent.extend(batch)
        return len(batch)


class Indexer:
    """Committed offsets of the indexer group, set by the test."""

    def __init__(self) -> None:
        self.committed: dict[TopicPartition, int] = {}
        self.asked: list[dict[TopicPartition, int]] = []

    def wait_past(self, needed: Mapping[TopicPartition, int], timeout_s: float) -> None:
        self.asked.append(dict(needed))
        if any(self.committed.get(tp, -1) < offset for tp, offset in needed.items()):
            raise Unavailable("the collector-indexer has not stored them yet")


@pytest.fixture(scope="module")
def transform() -> Transform:
    return small_transform()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = SqliteStore(tmp_path / "store.sqlite3")
    yield store
    store.close()


def record(offset: int, value: object, partition: int = 0) -> ConsumedRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return ConsumedRecord(TOPIC, partition, offset, None, raw, 0)


def comment(i: int, text: str) -> dict:
    return {"id": f"c{i}", "text": text, "source": "test", "metadata": {"year": 2010}}


def scorer(rig: Rig, store: Store, indexer: Indexer) -> tuple[StreamScorer, Producer]:
    producer = Producer()
    handler = StreamScorer(
        rig.predictor,
        store,
        producer,  # type: ignore[arg-type]
        indexer,
        topic=rig.settings.kafka.topics.scored_comments,
        batch_size=rig.settings.inference.stream_batch_size,
    )
    return handler, producer


def test_scores_are_added_to_stored_comments_and_produced(
    tmp_path: Path, transform: Transform, store: Store
) -> None:
    rig = Rig(tmp_path, transform, stream_batch_size=2)
    docs = [comment(i, text) for i, text in enumerate(["you idiot", "thanks", "great edit"])]
    store.upsert(COMMENTS, docs)  # what the indexer wrote
    indexer = Indexer()
    indexer.committed = {TopicPartition(TOPIC, 0): 3, TopicPartition(TOPIC, 1): 10}
    handler, producer = scorer(rig, store, indexer)
    records = [record(0, docs[0]), record(1, docs[1]), record(7, docs[2], partition=1)]

    assert handler(records) == []
    assert indexer.asked == [{TopicPartition(TOPIC, 0): 2, TopicPartition(TOPIC, 1): 8}]
    assert [key for _, key, _ in producer.sent] == ["c0", "c1", "c2"]
    for doc, (topic, _, value) in zip(docs, producer.sent, strict=True):
        assert topic == rig.settings.kafka.topics.scored_comments
        assert set(value) == {
            "id", "score", "label", "threshold", "model_version", "transform_version", "scored_at"
        }  # fmt: skip
        stored = store.get(COMMENTS, doc["id"])
        assert {k: stored[k] for k in doc} == doc  # the comment is intact
        assert stored["prediction"] == {k: v for k, v in value.items() if k != "id"}
    assert [rows for _, (rows, _) in rig.client.calls] == [2, 1]  # micro-batches


def test_poison_records_are_handed_back_and_the_rest_scored(
    tmp_path: Path, transform: Transform, store: Store
) -> None:
    rig = Rig(tmp_path, transform)
    good = comment(1, "thanks for the help")
    store.upsert(COMMENTS, [good])
    indexer = Indexer()
    indexer.committed = {TopicPartition(TOPIC, 0): 10}
    handler, producer = scorer(rig, store, indexer)
    poison = [record(0, b"{not json"), record(1, {"id": "x"}), record(3, b"")]
    failures = handler([poison[0], poison[1], record(2, good), poison[2]])
    assert [f.record.offset for f in failures] == [0, 1, 3]
    assert "invalid JSON" in failures[0].error and "text" in failures[1].error
    assert [key for _, key, _ in producer.sent] == ["c1"]


def test_an_outage_raises_so_nothing_is_committed_or_dead_lettered(
    tmp_path: Path, transform: Transform, store: Store
) -> None:
    rig = Rig(tmp_path, transform)
    indexer = Indexer()
    indexer.committed = {TopicPartition(TOPIC, 0): 10}
    handler, producer = scorer(rig, store, indexer)
    rig.client.down = True
    with pytest.raises(Unavailable, match="model server"):
        handler([record(0, comment(0, "hello"))])
    assert producer.sent == []


def test_scores_wait_for_the_indexer_to_store_the_comments(
    tmp_path: Path, transform: Transform, store: Store
) -> None:
    rig = Rig(tmp_path, transform)
    indexer = Indexer()
    indexer.committed = {TopicPartition(TOPIC, 0): 1}  # stored offset 0 only
    handler, producer = scorer(rig, store, indexer)
    with pytest.raises(Unavailable, match="indexer"):
        handler([record(0, comment(0, "a")), record(1, comment(1, "b"))])
    assert producer.sent == [] and rig.client.calls == []


def test_a_comment_the_indexer_refused_is_produced_but_not_stored(
    tmp_path: Path, transform: Transform, store: Store
) -> None:
    rig = Rig(tmp_path, transform)
    indexer = Indexer()
    indexer.committed = {TopicPartition(TOPIC, 0): 1}
    handler, producer = scorer(rig, store, indexer)
    assert handler([record(0, comment(0, "a"))]) == []
    assert [key for _, key, _ in producer.sent] == ["c0"]
    assert store.get(COMMENTS, "c0") is None


class WaitingRuntime:
    """What ``wait_for_model`` reads of the runtime: the version tracker and readiness."""

    def __init__(self, rig: Rig) -> None:
        self.tracker = rig.tracker

    def ready_checks(self) -> dict[str, bool]:
        return {"model": self.tracker.refresh() is not None}


def test_consuming_starts_once_a_model_is_servable(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform, versions=(), inference_stream_metrics_port=0)
    rig.add_version(1)

    def deploy() -> None:
        time.sleep(0.3)
        rig.client.available.append(1)

    threading.Thread(target=deploy).start()
    started = time.monotonic()
    assert wait_for_model(WaitingRuntime(rig), ("127.0.0.1", 0)) is True  # type: ignore[arg-type]
    assert 0.3 <= time.monotonic() - started < 3


def test_a_stop_ends_the_wait_for_a_model(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform, versions=(), inference_stream_metrics_port=0)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert wait_for_model(WaitingRuntime(rig), ("127.0.0.1", 0), stop) is False  # type: ignore[arg-type]


class Watching:
    """A monitor's hot-path face that keeps what it is handed."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, list[str], list[str] | None]] = []

    def observe(self, model, texts, metadata, predictions, ids=None) -> None:  # noqa: ANN001
        self.seen.append((model.version, list(texts), None if ids is None else list(ids)))


def test_scored_comments_reach_the_monitor_under_their_ids(
    tmp_path: Path, transform: Transform, store: Store
) -> None:
    rig = Rig(tmp_path, transform)
    watching = Watching()
    rig.predictor.monitor = watching  # type: ignore[assignment]
    docs = [comment(i, text) for i, text in enumerate(["you idiot", "thanks"])]
    store.upsert(COMMENTS, docs)
    indexer = Indexer()
    indexer.committed = {TopicPartition(TOPIC, 0): 10}
    handler, _ = scorer(rig, store, indexer)
    assert handler([record(0, docs[0]), record(1, docs[1])]) == []
    assert watching.seen == [(1, ["you idiot", "thanks"], ["c0", "c1"])]


def test_stored_scores_become_joinable_with_decisions(
    tmp_path: Path, transform: Transform, store: Store
) -> None:
    from mlcycle.contracts.monitoring import Decision
    from mlcycle.monitoring.feedback_store import MemoryFeedbackStore

    rig = Rig(tmp_path, transform)
    docs = [comment(i, text) for i, text in enumerate(["you idiot", "thanks"])]
    store.upsert(COMMENTS, docs)
    indexer = Indexer()
    indexer.committed = {TopicPartition(TOPIC, 0): 10}
    feedback = MemoryFeedbackStore(retention_s=60, window_decisions=10)
    handler = StreamScorer(
        rig.predictor,
        store,
        Producer(),  # type: ignore[arg-type]
        indexer,
        topic=rig.settings.kafka.topics.scored_comments,
        batch_size=8,
        feedback=feedback,
    )
    assert handler([record(0, docs[0]), record(1, docs[1])]) == []
    decisions = [Decision(comment_id="c0", label=1), Decision(comment_id="c9", label=1)]
    assert feedback.add_decisions(decisions, "ann") == ["joined", "pending"]
    (window,) = feedback.quality_windows(rig.predictor.tracker.name, 1)
    assert window.decisions == 1 and window.pending == 1
