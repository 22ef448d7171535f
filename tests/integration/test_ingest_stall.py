"""No partition can stall: a bad record is dead-lettered and the rest flows; an outage only delays.

Against the real broker and a real store (SQLite, and the Elasticsearch API on
osmem-server). The indexer runs as ``run_indexer`` wires it, its health app as
the consumer process serves it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaProducer
from osmem_server import OsmemServer
from prometheus_client import REGISTRY

from mlcycle.collector.indexer import SERVICE, indexed_topics
from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.process import free_port
from mlcycle.common.kafka.lag import group_lag
from mlcycle.common.kafka.service import health_app
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, VOTES, Store
from mlcycle.common.store.elastic import ElasticStore
from tests.fixtures.broker import indexer_thread, read_all, wait_for
from tests.fixtures.search import MediaTypeProxy

pytestmark = pytest.mark.integration

VALID_AFTER = 1000
STALL_BUDGET_S = 10.0


@pytest.fixture
def raw_producer(kafka_settings: Settings) -> Iterator[KafkaProducer]:
    """A plain Kafka client, as kcat or any other producer would write into the topics."""
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka.bootstrap_servers, acks="all")
    yield producer
    producer.close()


def _vote(item_id: str, annotator_id: str) -> bytes:
    return orjson.dumps({"item_id": item_id, "annotator_id": annotator_id, "label": 1})


@pytest.mark.parametrize("backend", ["sqlite", "elastic"])
def test_a_vote_with_a_600_byte_id_is_dead_lettered_and_the_partition_flows_on(
    backend: str,
    kafka_settings: Settings,
    raw_producer: KafkaProducer,
    request: pytest.FixtureRequest,
) -> None:
    store: Store = request.getfixturevalue(f"{backend}_store")
    topics = kafka_settings.kafka.topics
    indexer = indexer_thread(kafka_settings, store)
    try:
        # The indexer has joined its group and stores: from here on, the clock measures flow.
        raw_producer.send(topics.votes_raw, value=_vote("warm-up", "w"), partition=0).get(30)
        wait_for(lambda: store.get(VOTES, "toxicity:warm-up:w") is not None)

        long_id = "é" * 300  # 600 bytes in UTF-8
        started = time.perf_counter()
        # All in one partition, the bad one first: everything after it must still be stored.
        raw_producer.send(
            topics.votes_raw, key=long_id.encode(), value=_vote(long_id, "w"), partition=0
        )
        for n in range(VALID_AFTER):
            raw_producer.send(topics.votes_raw, value=_vote("after", f"w{n}"), partition=0)
        raw_producer.flush()
        wait_for(lambda: store.count(VOTES, {"item_id": "after"}) == VALID_AFTER, STALL_BUDGET_S)
        seconds = time.perf_counter() - started
    finally:
        indexer.stop()
    print(
        f"\nstall ({backend}): the 600-byte id dead-lettered, the next {VALID_AFTER} valid "
        f"records stored in {seconds:.2f} s (budget {STALL_BUDGET_S:.0f} s)"
    )
    assert seconds < STALL_BUDGET_S
    (letter,) = read_all(kafka_settings, topics.dlq(topics.votes_raw), expected=1)
    dead = orjson.loads(letter.value)
    assert dead["error"].startswith("invalid record: item_id: ")
    assert "an id is at most 512 bytes in UTF-8, this one is 600" in dead["error"]
    assert dead["original"]["offset"] == 1 and dead["service"] == SERVICE
    assert store.count(VOTES) == VALID_AFTER + 1  # the warm-up vote and the ones after


# -- a store outage ---------------------------------------------------------------------------


class SwitchableElasticsearch:
    """osmem behind the media-type proxy on a fixed port, to take down and bring back."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proxy: MediaTypeProxy | None = None

    def up(self) -> None:
        self._proxy = MediaTypeProxy(self.upstream, port=self.port).__enter__()

    def down(self) -> None:
        if self._proxy is not None:
            self._proxy.__exit__(None, None, None)
            self._proxy = None


def _retries(group: str) -> float:
    labels = {"group": group, "reason": "unavailable"}
    return REGISTRY.get_sample_value("mlcycle_consumer_batch_retries_total", labels) or 0.0


def test_a_store_outage_delays_records_loses_none_and_readiness_says_degraded_meanwhile(
    kafka_settings: Settings, raw_producer: KafkaProducer, osmem_base: OsmemServer
) -> None:
    topics = kafka_settings.kafka.topics
    group = kafka_settings.collector.indexer_group_id
    with osmem_base.clone() as clone:
        elastic = SwitchableElasticsearch(clone.url)
        elastic.up()
        # No client-side retries: the loop's own backoff is what is under test.
        store = ElasticStore(Elasticsearch(elastic.url, max_retries=0, request_timeout=5), "t-")
        indexer = indexer_thread(kafka_settings, store)
        health = BackgroundServer(health_app(SERVICE, store, indexer.loop), "127.0.0.1", 0)
        health.start()
        readyz = f"http://127.0.0.1:{health.port}/readyz"
        try:

            def produce(first: int, count: int) -> None:
                for n in range(first, first + count):
                    value = orjson.dumps({"id": f"c{n}", "text": f"comment {n}"})
                    raw_producer.send(topics.comments_raw, key=f"c{n}".encode(), value=value)
                raw_producer.flush()

            produce(0, 100)
            wait_for(lambda: store.count(COMMENTS) == 100)
            assert httpx.get(readyz).json()["status"] == "ready"

            retries_before = _retries(group)
            elastic.down()
            outage_started = time.perf_counter()
            produce(100, 200)  # acknowledged by Kafka while the store is down
            wait_for(lambda: _retries(group) >= retries_before + 3)
            during = httpx.get(readyz)
            assert during.status_code == 200
            body = during.json()
            assert body["status"] == "degraded"
            assert body["checks"] == {"store": False, "consumer": False}
            reason = body["reasons"]["consumer"]
            assert re.search(r"a batch of \d+ records failed \d+ times", reason)
            assert "elasticsearch is unreachable" in reason
            assert group_lag(kafka_settings.kafka, group, indexed_topics(topics)) > 0

            elastic.up()
            wait_for(lambda: store.count(COMMENTS) == 300, 60)
            recovered = time.perf_counter() - outage_started
            wait_for(lambda: httpx.get(readyz).json()["status"] == "ready")
            wait_for(lambda: group_lag(kafka_settings.kafka, group, indexed_topics(topics)) == 0)
            store.refresh()
            stored = {doc["id"] for doc in store.scan(COMMENTS)}
        finally:
            health.stop()
            indexer.stop()
            store.close()
            elastic.down()
    assert stored == {f"c{n}" for n in range(300)}
    print(
        f"\noutage: {_retries(group) - retries_before:.0f} retries counted, degraded on /readyz, "
        f"all 300 records stored {recovered:.1f} s after the store went down"
    )
