"""Every Kafka, Elasticsearch and Redis client is built from the settings' security options.

Three functions turn settings into client options (``client_config`` for Kafka,
``client_options`` for Elasticsearch, ``connection_options`` for Redis). These tests
check what each produces, that half a configuration is refused with the variables
named, that secrets stay out of reprs, and that the code builds no client any other
way: the source is scanned for the client constructors, and each place that builds a
Kafka client is run with the kafka-python classes recorded, to see the options arrive.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from mlcycle.common.kafka import admin, connection, lag
from mlcycle.common.kafka.consumer import ConsumerLoop
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.progress import CommittedOffsets
from mlcycle.common.redis_connection import connection_options, redacted
from mlcycle.common.settings import load_settings
from mlcycle.common.store.elastic_connection import client_options, elastic_client
from mlcycle.local.pipeline import ScoredReader

SERVICES = Path(__file__).resolve().parents[2] / "services" / "mlcycle"
SECRET = "kafka-pw-never-printed"


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def sasl_ssl(ca_file: Path) -> dict[str, Any]:
    return {
        "kafka_bootstrap": "kafka-0:9093,kafka-1:9093",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "mlcycle",
        "kafka_sasl_password": SECRET,
        "kafka_ssl_cafile": str(ca_file),
    }


# -- Kafka ------------------------------------------------------------------------------------


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    assert connection.client_config(load_settings(kafka_bootstrap="k:9092").kafka) == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_ssl_gives_the_login_and_the_ca(ca_file: Path) -> None:
    kafka = load_settings(**sasl_ssl(ca_file)).kafka
    assert connection.client_config(kafka) == {
        "bootstrap_servers": "kafka-0:9093,kafka-1:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "mlcycle",
        "sasl_plain_password": SECRET,
        "ssl_cafile": str(ca_file),
        "ssl_check_hostname": True,
    }
    assert SECRET not in repr(kafka)


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [("SASL_PLAINTEXT", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-256"), ("SSL", None)],
)
def test_each_protocol_sends_only_what_it_uses(protocol: str, mechanism: str | None) -> None:
    login = {"kafka_sasl_mechanism": mechanism, "kafka_sasl_username": "u"} if mechanism else {}
    if mechanism:
        login["kafka_sasl_password"] = "p"
    kafka = load_settings(kafka_bootstrap="k:1", kafka_security_protocol=protocol, **login).kafka
    config = connection.client_config(kafka)
    assert ("sasl_plain_password" in config) == protocol.startswith("SASL_")
    # TLS without a CA file: kafka-python verifies against the system's CAs.
    assert ("ssl_cafile" in config) == protocol.endswith("SSL")
    assert config.get("ssl_cafile") is None
    if mechanism:
        assert config["sasl_mechanism"] == mechanism


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "MLCYCLE_KAFKA_SASL_PASSWORD"),
        ({"kafka_sasl_username": "u", "kafka_sasl_password": "p"}, "is PLAINTEXT"),
        ({"kafka_ssl_cafile": "/x/ca.crt"}, "MLCYCLE_KAFKA_SSL_CAFILE"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nowhere/ca.crt"},
            "no file at /nowhere/ca.crt",
        ),
    ],
)
def test_half_a_kafka_configuration_is_refused_naming_the_variable(
    settings: dict[str, str], named: str
) -> None:
    kafka = load_settings(kafka_bootstrap="k:1", **settings).kafka
    with pytest.raises(ValueError, match=named):
        connection.client_config(kafka)


def test_the_variables_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, ca_file: Path
) -> None:
    for name, value in sasl_ssl(ca_file).items():
        monkeypatch.setenv(f"MLCYCLE_{name.upper()}", value)
    assert load_settings().kafka == load_settings(**sasl_ssl(ca_file)).kafka


class Recorded:
    """The kafka-python classes, recorded: every construction's keyword arguments."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        for name in ("KafkaProducer", "KafkaConsumer", "KafkaAdminClient"):
            monkeypatch.setattr(connection, name, self._factory(name))

    def _factory(self, name: str) -> Any:
        def build(**options: Any) -> mock.MagicMock:
            self.calls.append((name, options))
            return mock.MagicMock(name=name)

        return build


def test_every_place_that_builds_a_kafka_client_sends_the_security_options(
    monkeypatch: pytest.MonkeyPatch, ca_file: Path
) -> None:
    settings = load_settings(**sasl_ssl(ca_file))
    kafka = settings.kafka
    expected = connection.client_config(kafka)
    recorded = Recorded(monkeypatch)
    # Every producer, consumer and admin client the code makes, each built once.
    RecordProducer(kafka, client_id="t")
    ConsumerLoop(kafka, topics=["t"], group_id="g", handler=list, service="t")._connect()
    admin.ensure_topics(kafka, ["t"])
    lag.end_offsets(kafka, ["t"])
    lag.group_lag(kafka, "g", ["t"])
    CommittedOffsets(kafka, "collector-indexer").committed_by("labeler")
    ScoredReader(kafka)
    monkeypatch.setattr(admin, "_listening", lambda bootstrap: True)
    admin.wait_for_broker(kafka, timeout_s=0)
    kinds = {name for name, _ in recorded.calls}
    assert kinds == {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient"}
    assert len(recorded.calls) >= 9
    for name, options in recorded.calls:
        assert options.items() >= expected.items(), name


def _calls(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in names:
                found.append((node.lineno, name))
    return found


def client_constructions(names: set[str]) -> dict[str, list[tuple[int, str]]]:
    """Module path -> calls of ``names`` in it, over the whole mlcycle package."""
    found = {}
    for path in sorted(SERVICES.rglob("*.py")):
        calls = _calls(ast.parse(path.read_text("utf-8")), names)
        if calls:
            found[str(path.relative_to(SERVICES))] = calls
    return found


def test_kafka_clients_are_built_only_by_the_connection_module() -> None:
    found = client_constructions({"KafkaProducer", "KafkaConsumer", "KafkaAdminClient"})
    assert set(found) == {"common/kafka/connection.py"}, found


def test_elasticsearch_clients_are_built_only_by_the_connection_module() -> None:
    found = client_constructions({"Elasticsearch", "AsyncElasticsearch"})
    assert set(found) == {"common/store/elastic_connection.py"}, found


def test_redis_clients_are_the_cache_and_the_embedded_servers_probe_only() -> None:
    found = client_constructions({"Redis", "StrictRedis", "from_url", "ConnectionPool"})
    assert set(found) == {
        "inference/cache.py",
        "common/infra/redis.py",
        # The monitor's shared windows and the feedback join: clients built from the options
        # their callers pass (below), and the join store's own from_url.
        "monitoring/redis_aggregate.py",
        "monitoring/feedback_redis.py",
        "inference/feedback.py",
        # A rollout's pooled evidence: written by inference, read by the trainer's controller.
        "inference/evidence.py",
        "trainer/rollout_signals.py",
    }, found
    # The cache's one client takes the options connection_options made.
    cache = (SERVICES / "inference" / "cache.py").read_text("utf-8")
    assert "Redis.from_url(\n            url,\n            **self.connection," in cache
    # So do the aggregate's and the join's, which their callers build from the settings.
    runtime = (SERVICES / "inference" / "runtime.py").read_text("utf-8")
    assert "RedisAggregate(url, **connection_options(settings.cache))" in runtime
    feedback = (SERVICES / "inference" / "feedback.py").read_text("utf-8")
    assert "connection=connection_options(settings.cache)," in feedback
    evidence = (SERVICES / "inference" / "evidence.py").read_text("utf-8")
    assert "**connection_options(settings.cache),\n    )" in evidence
    signals = (SERVICES / "trainer" / "rollout_signals.py").read_text("utf-8")
    assert "options = connection_options(settings.cache)" in signals
    for library in ("redis_aggregate.py", "feedback_redis.py"):
        code = (SERVICES / "monitoring" / library).read_text("utf-8")
        assert code.count("redis.Redis.from_url(") == 1, library


def test_the_scan_sees_a_client_built_elsewhere() -> None:
    tree = ast.parse("import kafka\nproducer = kafka.KafkaProducer(bootstrap_servers='x')\n")
    assert _calls(tree, {"KafkaProducer"}) == [(2, "KafkaProducer")]


# -- Elasticsearch ----------------------------------------------------------------------------


def test_elasticsearch_gets_basic_auth_and_the_ca(ca_file: Path) -> None:
    store = load_settings(
        es_url="https://es-0:9200, https://es-1:9200",
        es_username="mlcycle",
        es_password="es-pw",
        es_ca_certs=str(ca_file),
    ).store
    options = client_options(store)
    assert options["hosts"] == ["https://es-0:9200", "https://es-1:9200"]
    assert options["basic_auth"] == ("mlcycle", "es-pw")
    assert options["ca_certs"] == str(ca_file)
    assert "api_key" not in options
    assert "es-pw" not in repr(store)
    # The client itself takes them (it refuses a CA file it cannot read, so give it none).
    client = elastic_client(store.model_copy(update={"es_ca_certs": None}))
    nodes = {node.base_url for node in client.transport.node_pool.all()}
    assert nodes == {"https://es-0:9200", "https://es-1:9200"}
    assert client._headers["authorization"].startswith("Basic ")


def test_an_api_key_is_sent_as_one() -> None:
    store = load_settings(es_url="http://es:9200", es_api_key="k3y").store
    assert client_options(store)["api_key"] == "k3y"
    assert "k3y" not in repr(store)
    assert elastic_client(store)._headers["authorization"] == "ApiKey k3y"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"es_username": "u"}, "MLCYCLE_ES_PASSWORD"),
        ({"es_api_key": "k", "es_username": "u", "es_password": "p"}, "not both"),
        ({"es_ca_certs": "/x/ca.crt"}, "not https://"),
    ],
)
def test_half_an_elasticsearch_login_is_refused(settings: dict[str, str], named: str) -> None:
    store = load_settings(es_url="http://es:9200", **settings).store
    with pytest.raises(ValueError, match=named):
        client_options(store)


# -- Redis ------------------------------------------------------------------------------------


def test_redis_gets_the_password_and_the_ca_outside_the_url(ca_file: Path) -> None:
    cache = load_settings(
        redis_url="rediss://cache:6380/0", redis_password="r-pw", redis_ca_file=str(ca_file)
    ).cache
    assert connection_options(cache) == {"password": "r-pw", "ssl_ca_certs": str(ca_file)}
    assert "r-pw" not in repr(cache)
    assert connection_options(load_settings(redis_url="redis://c:6379/0").cache) == {}
    with pytest.raises(ValueError, match="not rediss://"):
        connection_options(
            load_settings(redis_url="redis://c:6379/0", redis_ca_file=str(ca_file)).cache
        )


def test_a_password_in_a_redis_url_is_redacted_for_logs() -> None:
    assert redacted("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redacted("rediss://user:pw@[::1]:6380/1") == "rediss://user:***@[::1]:6380/1"
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"
