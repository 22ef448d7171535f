"""RecordProducer against the real broker: acknowledgements, keys, partitions, failures."""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from mlcycle.common.errors import PayloadTooLarge, Unavailable
from mlcycle.common.infra.broker import EmbeddedBroker
from mlcycle.common.kafka.producer import MAX_REQUEST_BYTES, RecordProducer
from mlcycle.common.settings import Settings
from tests.fixtures.broker import broker_settings, read_all

pytestmark = pytest.mark.integration


def _produced_total(topic: str) -> float:
    return REGISTRY.get_sample_value("mlcycle_records_produced_total", {"topic": topic}) or 0.0


def test_send_batch_acknowledges_every_record_and_keys_pick_the_partition(
    kafka_settings: Settings,
) -> None:
    topic = kafka_settings.kafka.topics.comments_raw
    # Five versions of each of 40 ids, interleaved: one id's history must stay in one partition.
    items = [
        (f"id-{i}", orjson.dumps({"id": f"id-{i}", "version": v}))
        for v in range(5)
        for i in range(40)
    ]
    with RecordProducer(kafka_settings.kafka, client_id="test") as producer:
        assert producer.send_batch(topic, items) == len(items)
    assert _produced_total(topic) == len(items)

    records = read_all(kafka_settings, topic, len(items))
    assert len(records) == len(items)
    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    versions_of: dict[bytes, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        partitions_of[record.key].add(record.partition)
        versions_of[record.key].append(orjson.loads(record.value)["version"])
    assert all(len(p) == 1 for p in partitions_of.values()), "a key spread over partitions"
    assert all(v == [0, 1, 2, 3, 4] for v in versions_of.values()), "a key's order was lost"
    used = set().union(*partitions_of.values())
    assert len(used) > 1, "40 keys should spread over the 3 partitions"


def test_send_batch_is_safe_from_many_threads(kafka_settings: Settings) -> None:
    topic = kafka_settings.kafka.topics.votes_raw
    results: list[int] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            items = [(f"t{n}-{i}", b'{"x": 1}') for i in range(250)]
            results.append(producer.send_batch(topic, items))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with RecordProducer(kafka_settings.kafka) as producer:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors
    assert sorted(results) == [250] * 8
    records = read_all(kafka_settings, topic, 2000)
    assert len({r.key for r in records}) == 2000


def test_send_returns_a_future_and_keeps_headers(kafka_settings: Settings) -> None:
    topic = kafka_settings.kafka.topics.labels
    with RecordProducer(kafka_settings.kafka) as producer:
        metadata = producer.send(topic, "k1", b"v1", [("h", b"x")]).get(10)
        producer.flush(10)
    assert metadata.topic == topic and metadata.offset >= 0
    (record,) = read_all(kafka_settings, topic, 1)
    assert (record.key, record.value, list(record.headers)) == (b"k1", b"v1", [("h", b"x")])


def test_an_oversized_record_is_a_client_error(kafka_settings: Settings) -> None:
    with RecordProducer(kafka_settings.kafka) as producer, pytest.raises(PayloadTooLarge):
        producer.send_batch(
            kafka_settings.kafka.topics.models, [("big", b"x" * (MAX_REQUEST_BYTES + 1))]
        )


def test_send_batch_raises_unavailable_naming_the_topic_when_the_broker_is_gone(
    tmp_path: Path,
) -> None:
    with EmbeddedBroker(0) as broker:
        settings = broker_settings(broker.bootstrap, tmp_path)
        topic = settings.kafka.topics.comments_raw
        producer = RecordProducer(settings.kafka)
        assert producer.send_batch(topic, [("a", b"1")]) == 1
    # The broker is stopped: nothing can be acknowledged any more.
    try:
        with pytest.raises(Unavailable, match=topic):
            producer.send_batch(topic, [("b", b"2")], timeout_s=1.5)
    finally:
        producer.close(timeout=0)


def test_no_broker_at_all_is_unavailable(tmp_path: Path) -> None:
    from mlcycle.common.infra.process import free_port
    from mlcycle.common.settings import load_settings

    settings = load_settings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}", data_dir=tmp_path, kafka_request_timeout_ms=1000
    )
    with pytest.raises(Unavailable, match="cannot connect"):
        RecordProducer(settings.kafka)
