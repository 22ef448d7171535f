# The stream's fixtures are imported below and taken as parameters by name (pytest's way).
# ruff: noqa: F401, F811
"""Any Kafka client can feed the stream: confluent-kafka (librdkafka) beside kafka-python.

A user's own producer writes comments into ``comments.raw`` of the embedded broker with
confluent-kafka, the indexer stores them, the stream scorer scores them, and a
confluent-kafka consumer in its own group reads every score from ``scored.comments``,
the same records kafka-python reads there.
"""

from __future__ import annotations

import time
import uuid

import confluent_kafka
import orjson
import pytest

from mlcycle.common.settings import Settings
from mlcycle.common.store import Store
from tests.fixtures.broker import LoopThread

# The stream's fixtures (a model server with built models, the indexer, the settings).
from tests.integration.test_inference_stream import (
    Scoring,
    comments,
    indexer,
    models_root,
    scored,
    settings,
    store,
    world,
)

pytestmark = pytest.mark.integration


def produce_with_librdkafka(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    """Produce ``records`` as a confluent-kafka user would, and check every delivery."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "acks": "all"}
    )
    failed: list[str] = []

    def delivered(error: confluent_kafka.KafkaError | None, message: object) -> None:
        if error is not None:
            failed.append(str(error))

    for key, value in records:
        producer.produce(settings.kafka.topics.comments_raw, value, key, on_delivery=delivered)
    assert producer.flush(30) == 0, "records left undelivered"
    assert failed == []


def consume_with_librdkafka(settings: Settings, ids: set[str], timeout_s: float) -> dict:
    """The scored records of ``ids``, read by a confluent-kafka consumer group of its own."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"librdkafka-reader.{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            # The embedded broker completes a join after about half the session timeout.
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        }
    )
    found: dict[str, dict] = {}
    try:
        consumer.subscribe([settings.kafka.topics.scored_comments])
        deadline = time.monotonic() + timeout_s
        while set(found) < ids and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            found[message.key().decode()] = orjson.loads(message.value())
    finally:
        consumer.close()
    return found


def test_confluent_kafka_feeds_the_stream_and_reads_the_scores(
    settings: Settings,
    store: Store,
    indexer: LoopThread,
) -> None:
    assert confluent_kafka.libversion()[0].startswith("2.")
    scoring = Scoring(settings, store)
    try:
        batch = comments("librdkafka", 12)
        produce_with_librdkafka(settings, batch)
        ids = {key for key, _ in batch}
        read = consume_with_librdkafka(settings, ids, timeout_s=90)
        assert set(read) == ids
        for value in read.values():
            assert value["model_version"] == 1 and 0.0 <= value["score"] <= 1.0
        # kafka-python reads the very same records.
        by_kafka_python = {key: values[-1] for key, values in scored(settings, len(ids)).items()}
        assert by_kafka_python == read
    finally:
        scoring.stop()
