"""The indexer: raw-topic records end up in the store exactly once, bad ones in the DLQ."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from kafka import KafkaProducer

from mlcycle.collector.indexer import Indexer
from mlcycle.common.kafka.consumer import ConsumedRecord, ConsumerLoop
from mlcycle.common.settings import Settings, settings_to_env
from mlcycle.common.store import COMMENTS, VOTES, Store, open_store
from tests.fixtures.broker import indexer_thread, read_all, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def store(kafka_settings: Settings) -> Iterator[Store]:
    store = open_store(kafka_settings.store)
    yield store
    store.close()


@pytest.fixture
def raw_producer(kafka_settings: Settings) -> Iterator[KafkaProducer]:
    """A plain Kafka client, as kcat or any other producer would write into the topics."""
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka.bootstrap_servers, acks="all")
    yield producer
    producer.close()


def produce(producer: KafkaProducer, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()


@pytest.fixture
def running_indexer(kafka_settings: Settings, store: Store) -> Iterator[ConsumerLoop]:
    """The indexer's consumer loop on a thread, as ``run_indexer`` wires it."""
    indexer = indexer_thread(kafka_settings, store)
    yield indexer.loop
    indexer.stop()


def comment(cid: str, text: str, **extra: object) -> bytes:
    return orjson.dumps({"id": cid, "text": text, **extra})


# -- through the broker -------------------------------------------------------------------------


def test_records_from_any_producer_are_stored_exactly_once(
    kafka_settings: Settings,
    store: Store,
    raw_producer: KafkaProducer,
    running_indexer: ConsumerLoop,
) -> None:
    topics = kafka_settings.kafka.topics
    produce(
        raw_producer,
        topics.comments_raw,
        [
            (b"k-1", comment("k-1", "first version")),
            (b"k-2", comment("k-2", "two", metadata={"year": 2016, "ns": "article"})),
            (b"k-1", comment("k-1", "second version")),  # a later version of the same id
            (None, comment("k-3", "sent without a key, like a bare kcat -P")),
            (b"k-2", comment("k-2", "two", metadata={"year": 2016, "ns": "article"})),
        ],
    )
    vote = {"item_id": "k-1", "annotator_id": "w9", "label": 1, "task": "toxicity"}
    produce(raw_producer, topics.votes_raw, [(b"k-1", orjson.dumps(vote))] * 3)

    wait_for(lambda: store.count(COMMENTS) == 3 and store.count(VOTES) == 1)
    wait_for(lambda: (store.get(COMMENTS, "k-1") or {}).get("text") == "second version")
    assert store.get(COMMENTS, "k-2")["metadata"] == {"year": 2016, "ns": "article"}
    assert store.get(COMMENTS, "k-3")["text"].startswith("sent without a key")
    stored_vote = store.get(VOTES, "toxicity:k-1:w9")
    assert stored_vote is not None and stored_vote["label"] == 1
    # Once all eight records went through the indexer, nothing is in flight any more.
    wait_for(lambda: running_indexer.stats.records >= 8)
    assert store.count(COMMENTS) == 3
    assert store.count(VOTES) == 1


def test_invalid_records_go_to_the_dlq_and_the_stream_goes_on(
    kafka_settings: Settings,
    store: Store,
    raw_producer: KafkaProducer,
    running_indexer: ConsumerLoop,
) -> None:
    topics = kafka_settings.kafka.topics
    bad = [
        (b"bad-json", b'{"id": "bad-json", "text": '),
        (b"bad-type", orjson.dumps({"id": "bad-type", "text": ["not", "a", "string"]})),
        (b"no-text", orjson.dumps({"id": "no-text"})),
        (b"array", b"[1, 2, 3]"),
        (b"empty", b""),
        (b"latin1", b'{"id": "latin1", "text": "caf\xe9"}'),
    ]
    good_after = [(b"good-after", comment("good-after", "the stream goes on"))]
    produce(raw_producer, topics.comments_raw, [*bad, *good_after])
    produce(raw_producer, topics.votes_raw, [(b"v", orjson.dumps({"item_id": "v", "label": 1}))])

    wait_for(lambda: store.get(COMMENTS, "good-after") is not None)
    dead = read_all(kafka_settings, topics.dlq(topics.comments_raw), expected=len(bad))
    letters = {r.key: orjson.loads(r.value) for r in dead}
    assert set(letters) == {key for key, _ in bad}
    assert "invalid JSON" in letters[b"bad-json"]["error"]
    assert "text: Input should be a valid string" in letters[b"bad-type"]["error"]
    assert "text: Field required" in letters[b"no-text"]["error"]
    assert "empty" in letters[b"empty"]["error"]
    assert letters[b"bad-json"]["original"]["value"] == '{"id": "bad-json", "text": '
    assert letters[b"latin1"]["original"]["value_encoding"] == "base64"
    assert letters[b"array"]["service"] == "collector-indexer"

    (vote_letter,) = read_all(kafka_settings, topics.dlq(topics.votes_raw), expected=1)
    assert "annotator_id: Field required" in orjson.loads(vote_letter.value)["error"]
    assert store.count(COMMENTS) == 1
    assert store.count(VOTES) == 0


def test_reserved_voters_on_votes_raw_are_dead_lettered_and_reviewed_votes_are_stored(
    kafka_settings: Settings,
    store: Store,
    raw_producer: KafkaProducer,
    running_indexer: ConsumerLoop,
) -> None:
    topics = kafka_settings.kafka.topics

    def vote(annotator: str) -> tuple[bytes, bytes]:
        return b"item", orjson.dumps({"item_id": "item", "annotator_id": annotator, "label": 1})

    produce(raw_producer, topics.votes_raw, [vote("human:mallory"), vote("lf:fake"), vote("w1")])
    produce(raw_producer, topics.votes_reviewed, [vote("human:ann")])

    dead = read_all(kafka_settings, topics.dlq(topics.votes_raw), expected=2)
    errors = {
        orjson.loads(r.value)["original"]["value"]: orjson.loads(r.value)["error"] for r in dead
    }
    assert len(errors) == 2
    for error in errors.values():
        assert error.startswith("invalid record: annotator_id: ")
        assert "reserved for the labeler's reviewers and labeling functions" in error
    wait_for(lambda: running_indexer.stats.records >= 4)
    stored = {v["annotator_id"] for v in store.scan(VOTES)}
    assert stored == {"w1", "human:ann"}


# -- the handler on its own ---------------------------------------------------------------------


def _record(topic: str, offset: int, value: bytes) -> ConsumedRecord:
    return ConsumedRecord(topic, 0, offset, None, value, 0)


def test_handler_is_idempotent_and_reports_only_invalid_records(
    kafka_settings: Settings, store: Store
) -> None:
    topics = kafka_settings.kafka.topics
    indexer = Indexer(kafka_settings.kafka.topics, store)
    batch = [
        _record(topics.comments_raw, 0, comment("h-1", "one")),
        _record(topics.comments_raw, 1, b"not json"),
        _record(
            topics.votes_raw, 2, orjson.dumps({"item_id": "h-1", "annotator_id": "a", "label": 0.5})
        ),
        _record("some.other.topic", 3, comment("h-2", "two")),
    ]
    for _ in range(2):  # a redelivered batch changes nothing
        failures = indexer(batch)
        assert [f.record.offset for f in failures] == [1, 3]
        assert store.count(COMMENTS) == 1
        assert store.count(VOTES) == 1
    assert store.get(VOTES, "toxicity:h-1:a")["label"] == 0.5
    assert "no indexer for topic" in failures[1].error


# -- the real process ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_indexer_process_serves_health_and_stops_cleanly_on_sigterm(
    kafka_settings: Settings, raw_producer: KafkaProducer, tmp_path: Path
) -> None:
    settings = kafka_settings.replace(indexer_metrics_port=_free_port())
    env = {**os.environ, **settings_to_env(settings)}
    log_path = tmp_path / "indexer.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "collector", "indexer"],
            env=env,
            stdout=log,
            stderr=log,
        )

    def alive_and(condition: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:
            assert proc.poll() is None, log_path.read_text()
            return condition()

        return check

    health = f"http://127.0.0.1:{settings.collector.indexer_metrics_port}"
    try:
        produce(
            raw_producer,
            settings.kafka.topics.comments_raw,
            [(b"p-1", comment("p-1", "from kcat"))],
        )
        wait_for(alive_and(lambda: _ok(f"{health}/healthz")))
        store = open_store(settings.store)
        try:
            wait_for(alive_and(lambda: store.get(COMMENTS, "p-1") is not None))
        finally:
            store.close()
        metrics = httpx.get(f"{health}/metrics").text
        assert 'mlcycle_collector_documents_indexed_total{collection="comments"}' in metrics
        assert httpx.get(f"{health}/readyz").json()["checks"] == {"store": True}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_ids_are_bounded_in_utf8_bytes_and_long_vote_ids_are_hashed(
    kafka_settings: Settings, store: Store
) -> None:
    topics = kafka_settings.kafka.topics
    indexer = Indexer(topics, store)
    long_item = "é" * 300  # 300 characters, 600 bytes
    item, annotator = "i" * 400, "a" * 200  # each fits; joined with the task they do not

    def vote(item_id: str, annotator_id: str) -> bytes:
        return orjson.dumps({"item_id": item_id, "annotator_id": annotator_id, "label": 1})

    batch = [
        _record(topics.votes_raw, 0, vote(long_item, "w1")),
        _record(topics.comments_raw, 1, comment(long_item, "a comment with a long id")),
        _record(topics.votes_raw, 2, vote(item, annotator)),
    ]
    for _ in range(2):  # redelivered: the hashed id is the same, so still one vote
        failures = indexer(batch)
        assert [f.record.offset for f in failures] == [0, 1]
        assert store.count(VOTES) == 1
    assert "item_id: Value error, an id is at most 512 bytes in UTF-8, this one is 600" in (
        failures[0].error
    )
    assert "id: Value error, an id is at most 512 bytes" in failures[1].error
    (stored,) = store.scan(VOTES)
    assert stored["id"].startswith("vote-") and len(stored["id"]) == len("vote-") + 64
    assert (stored["item_id"], stored["annotator_id"]) == (item, annotator)
    assert store.count(COMMENTS) == 0


def test_a_record_the_store_refuses_is_dead_lettered_and_the_rest_stored(
    kafka_settings: Settings, elastic_store: Store
) -> None:
    topics = kafka_settings.kafka.topics
    # Another writer mapped ``source`` as a number first: a text source now conflicts.
    elastic_store.upsert(COMMENTS, [{"id": "seed", "text": "x", "source": 5}])
    indexer = Indexer(topics, elastic_store)
    batch = [
        _record(topics.comments_raw, 0, comment("m-1", "conflicts", source="wiki")),
        _record(topics.comments_raw, 1, comment("m-2", "fits")),
        _record(topics.comments_raw, 2, comment("m-3", "fits too", source=None)),
    ]
    failures = indexer(batch)
    assert [f.record.offset for f in failures] == [0]
    assert failures[0].error.startswith("the store refused it: ")
    assert "[source]" in failures[0].error
    elastic_store.refresh()
    assert elastic_store.get(COMMENTS, "m-1") is None
    assert elastic_store.get(COMMENTS, "m-2") is not None
    assert elastic_store.get(COMMENTS, "m-3") is not None
