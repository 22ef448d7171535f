"""Settings: every documented ``MLCYCLE_*`` variable lands in its section with its meaning.

The variables predate the sections and keep their flat names; these tests read
each one the README's configuration table, ``docker-compose.yml``,
``.env.example`` and ``deploy/k8s`` name, and check where it lands and what it
means there. They also check the trip through a child process's environment
(``settings_to_env``), what ``replace`` re-resolves, and what errors say.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from mlcycle.common.settings import CHECKOUT_SUITE, Settings, load_settings, settings_to_env

REPO = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\bMLCYCLE_[A-Z0-9_]+")
SECRET = "s3cret-key-do-not-echo"


def value_at(settings: Settings, path: str) -> Any:
    """``settings.<path>``, e.g. ``value_at(s, "inference.predict_retries")``."""
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


# One variable each, set alone: its raw value, then what the settings hold because of it.
# Derived facts (the bootstrap address, a task's classes, the model server's target) are
# checked beside the field, since they are what the variable means to the code.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    # the parts that swap an embedded default for a real cluster
    "MLCYCLE_KAFKA_BOOTSTRAP": (
        "kafka:9092",
        {"kafka.bootstrap": "kafka:9092", "kafka.embedded": False},
    ),
    "MLCYCLE_EMBEDDED_KAFKA_PORT": (
        "9193",
        {
            "kafka.embedded_port": 9193,
            "kafka.embedded": True,
            "kafka.bootstrap_servers": "127.0.0.1:9193",
        },
    ),
    "MLCYCLE_KAFKA_PARTITIONS": ("12", {"kafka.partitions": 12}),
    "MLCYCLE_KAFKA_REPLICATION_FACTOR": ("3", {"kafka.replication_factor": 3}),
    "MLCYCLE_TOPICS__LABELS": ("labels.v2", {"kafka.topics.labels": "labels.v2"}),
    "MLCYCLE_ES_URL": ("http://es:9200", {"store.es_url": "http://es:9200"}),
    "MLCYCLE_ES_API_KEY": (SECRET, {"store.es_api_key": SECRET}),
    "MLCYCLE_REDIS_URL": ("redis://cache:6379/0", {"cache.redis_url": "redis://cache:6379/0"}),
    "MLCYCLE_EMBEDDED_REDIS": ("false", {"cache.embedded_redis": False}),
    # how the clients log in to real clusters (mlcycle.common.*connection)
    "MLCYCLE_KAFKA_SECURITY_PROTOCOL": ("SASL_SSL", {"kafka.security_protocol": "SASL_SSL"}),
    "MLCYCLE_KAFKA_SASL_MECHANISM": ("SCRAM-SHA-512", {"kafka.sasl_mechanism": "SCRAM-SHA-512"}),
    "MLCYCLE_KAFKA_SASL_USERNAME": ("mlcycle", {"kafka.sasl_username": "mlcycle"}),
    "MLCYCLE_KAFKA_SASL_PASSWORD": (SECRET, {"kafka.sasl_password": SECRET}),
    "MLCYCLE_KAFKA_SSL_CAFILE": (
        "/etc/mlcycle/kafka-ca/ca.crt",
        {"kafka.ssl_cafile": Path("/etc/mlcycle/kafka-ca/ca.crt")},
    ),
    "MLCYCLE_ES_USERNAME": ("mlcycle", {"store.es_username": "mlcycle"}),
    "MLCYCLE_ES_PASSWORD": (SECRET, {"store.es_password": SECRET}),
    "MLCYCLE_ES_CA_CERTS": (
        "/etc/mlcycle/es-ca/ca.crt",
        {"store.es_ca_certs": Path("/etc/mlcycle/es-ca/ca.crt")},
    ),
    "MLCYCLE_REDIS_PASSWORD": (SECRET, {"cache.redis_password": SECRET}),
    "MLCYCLE_REDIS_CA_FILE": (
        "/etc/mlcycle/redis-ca/ca.crt",
        {"cache.redis_ca_file": Path("/etc/mlcycle/redis-ca/ca.crt")},
    ),
    # the process
    "MLCYCLE_DATA_DIR": ("/srv/mlcycle", {"data_dir": Path("/srv/mlcycle")}),
    "MLCYCLE_HOST": (
        "0.0.0.0",
        {"host": "0.0.0.0", "modelserver.target": "0.0.0.0:8500"},
    ),
    "MLCYCLE_LOG_FORMAT": ("text", {"log_format": "text"}),
    # every edge
    "MLCYCLE_API_KEYS": (" a , b,,c ", {"edge.api_keys": ("a", "b", "c")}),
    "MLCYCLE_API_KEYS_FILE": (
        "/etc/mlcycle/api-keys/keys",
        {"edge.api_keys_file": Path("/etc/mlcycle/api-keys/keys")},
    ),
    "MLCYCLE_MAX_BODY_BYTES": ("2048", {"edge.max_body_bytes": 2048}),
    "MLCYCLE_MAX_BATCH_RECORDS": ("7", {"edge.max_batch_records": 7}),
    # the gRPC edge (mlcycle.common.grpc, mlcycle.common.grpc_auth)
    "MLCYCLE_AUTH": ("off", {"edge.auth": "off"}),
    "MLCYCLE_SERVICE_KEY": (SECRET, {"edge.service_key": SECRET}),
    "MLCYCLE_GRPC_REFLECTION": ("true", {"edge.grpc_reflection": True}),
    "MLCYCLE_GRPC_MAX_CONCURRENT_RPCS": ("32", {"edge.grpc_max_concurrent_rpcs": 32}),
    "MLCYCLE_GRPC_MAX_MESSAGE_BYTES": ("4194304", {"edge.grpc_max_message_bytes": 4194304}),
    "MLCYCLE_MAX_QUEUED_JOBS": ("3", {"edge.max_queued_jobs": 3}),
    # the collector
    "MLCYCLE_COLLECTOR_PORT": ("18001", {"collector.port": 18001}),
    "MLCYCLE_INDEXER_METRICS_PORT": ("19401", {"collector.indexer_metrics_port": 19401}),
    # the labeler
    "MLCYCLE_LABELER_PORT": ("18002", {"labeler.port": 18002}),
    "MLCYCLE_LABELER_STREAM_METRICS_PORT": ("19402", {"labeler.stream_metrics_port": 19402}),
    "MLCYCLE_INFERENCE_URL": ("http://inference:8000", {"labeler.inference_url": "http://inference:8000"}),
    "MLCYCLE_TRAINER_URL": ("http://trainer:8004", {"labeler.trainer_url": "http://trainer:8004"}),
    "MLCYCLE_LABEL_CLASSES": (
        '{"toxicity": 2, "stance": 3}',
        {
            "labeler.classes": {"toxicity": 2, "stance": 3},
            "labeler.classes_of": lambda classes_of: classes_of("stance") == 3,
        },
    ),
    "MLCYCLE_GOLD_MIN_VOTES": ("3", {"labeler.gold_min_votes": 3}),
    "MLCYCLE_HUMAN_ACCURACY": ("0.95", {"labeler.human_accuracy": 0.95}),
    "MLCYCLE_LABEL_CHUNK_ITEMS": ("500", {"labeler.chunk_items": 500}),
    # the featurizer
    "MLCYCLE_FEATURIZER_PORT": ("18003", {"featurizer.port": 18003}),
    "MLCYCLE_FEATURIZER_GRPC_PORT": ("15053", {"featurizer.grpc_port": 15053}),
    "MLCYCLE_FEATURIZER_BATCH_METRICS_PORT": ("19403", {"featurizer.batch_metrics_port": 19403}),
    "MLCYCLE_ARTIFACTS_DIR": ("/artifacts", {"featurizer.artifacts_dir": Path("/artifacts")}),
    "MLCYCLE_SHARD_ROWS": ("1000", {"featurizer.shard_rows": 1000}),
    "MLCYCLE_FEATURIZE_MAX_INSTANCES": ("20", {"featurizer.max_instances": 20}),
    "MLCYCLE_BEHAVIOUR_SUITE": (
        "/suite",
        {"featurizer.behaviour_suite": Path("/suite")},
    ),
    # the trainer
    "MLCYCLE_TRAINER_PORT": ("18004", {"trainer.port": 18004}),
    "MLCYCLE_MODELS_DIR": (
        "/models",
        {"trainer.models_dir": Path("/models"), "trainer.served_models_dir": "/models"},
    ),
    "MLCYCLE_MODEL_NAME": ("abuse", {"trainer.model_name": "abuse"}),
    "MLCYCLE_MODEL_SERVER_BASE_PATH": (
        "/serving/models",
        {
            "trainer.model_server_base_path": "/serving/models",
            "trainer.served_models_dir": "/serving/models",
        },
    ),
    "MLCYCLE_BLESS_METRIC": ("pr_auc", {"trainer.bless_metric": "pr_auc"}),
    "MLCYCLE_BLESS_MARGIN": ("0.01", {"trainer.bless_margin": 0.01}),
    "MLCYCLE_AUTO_PROMOTE": ("false", {"trainer.auto_promote": False}),
    "MLCYCLE_TRAINER_SHUTDOWN_GRACE_S": ("45", {"trainer.shutdown_grace_s": 45.0}),
    "MLCYCLE_TRAIN_ON_NEW_LABEL_RUNS": ("true", {"trainer.train_on_new_label_runs": True}),
    "MLCYCLE_STUDY_STORAGE": (
        "postgresql://optuna@db/studies",
        {"trainer.study_storage": "postgresql://optuna@db/studies"},
    ),
    # the model server
    "MLCYCLE_MODEL_SERVER_PORT": (
        "8600",
        {"modelserver.port": 8600, "modelserver.target": "127.0.0.1:8600"},
    ),
    "MLCYCLE_MODEL_SERVER_TARGET": (
        "serving:8500",
        {"modelserver.target": "serving:8500", "modelserver.port": 8500},
    ),
    # inference
    "MLCYCLE_INFERENCE_PORT": ("18000", {"inference.port": 18000}),
    "MLCYCLE_INFERENCE_STREAM_METRICS_PORT": ("19405", {"inference.stream_metrics_port": 19405}),
    "MLCYCLE_FEEDBACK_METRICS_PORT": ("19406", {"monitoring.feedback_metrics_port": 19406}),
    "MLCYCLE_PREDICT_MAX_INSTANCES": ("100", {"inference.predict_max_instances": 100}),
    "MLCYCLE_PREDICT_BATCH_SIZE": ("16", {"inference.predict_batch_size": 16}),
    "MLCYCLE_PREDICT_DEADLINE_S": ("0.5", {"inference.predict_deadline_s": 0.5}),
    "MLCYCLE_PREDICT_RETRIES": ("5", {"inference.predict_retries": 5}),
    "MLCYCLE_PREDICT_THRESHOLD": ("0.7", {"inference.predict_threshold": 0.7}),
    "MLCYCLE_CACHE_TTL_S": ("60", {"inference.cache_ttl_s": 60}),
    "MLCYCLE_RATE_LIMIT_RPS": ("2.5", {"inference.rate_limit_rps": 2.5}),
    "MLCYCLE_RATE_LIMIT_BURST": ("10", {"inference.rate_limit_burst": 10}),
    # rollouts and continuous training
    "MLCYCLE_ROLLOUT_POLICY_FILE": (
        "/etc/mlcycle/rollout.json",
        {"rollouts.policy_file": Path("/etc/mlcycle/rollout.json")},
    ),
    "MLCYCLE_ROLLOUT_TICK_S": ("0.5", {"rollouts.tick_s": 0.5}),
    "MLCYCLE_ROLLOUT_EVIDENCE_FLUSH_S": ("2", {"rollouts.evidence_flush_s": 2.0}),
    "MLCYCLE_ROLLOUT_ROUTING_REFRESH_S": ("3", {"rollouts.routing_refresh_s": 3.0}),
    "MLCYCLE_ROLLOUT_OFFPATH_QUEUE_RECORDS": ("500", {"rollouts.offpath_queue_records": 500}),
    "MLCYCLE_RETRAINING_POLICY_FILE": (
        "/etc/mlcycle/retraining.json",
        {"rollouts.retraining_policy_file": Path("/etc/mlcycle/retraining.json")},
    ),
    "MLCYCLE_RETRAINING_CHECK_S": ("30", {"rollouts.retraining_check_s": 30.0}),
    "MLCYCLE_RETRAINING_POLL_S": ("2", {"rollouts.retraining_poll_s": 2.0}),
    "MLCYCLE_RETRAINING_METRICS_PORT": ("19407", {"rollouts.retraining_metrics_port": 19407}),
}


# Variables whose value other settings derive from when those are left empty.
DERIVED = {
    "MLCYCLE_DATA_DIR": {
        "MLCYCLE_SQLITE_PATH",
        "MLCYCLE_ARTIFACTS_DIR",
        "MLCYCLE_MODELS_DIR",
        "MLCYCLE_STUDY_STORAGE",
    },
    "MLCYCLE_HOST": {"MLCYCLE_MODEL_SERVER_TARGET"},
    "MLCYCLE_MODEL_SERVER_PORT": {"MLCYCLE_MODEL_SERVER_TARGET"},
}


def documented_variables() -> set[str]:
    """Every ``MLCYCLE_*`` name the README, the compose file, .env.example and k8s use."""
    files = [REPO / "README.md", REPO / "docker-compose.yml", REPO / ".env.example"]
    files += sorted((REPO / "deploy" / "k8s").rglob("*.yaml"))
    names: set[str] = set()
    for path in files:
        if path.is_file():
            names.update(VARIABLE.findall(path.read_text(encoding="utf-8")))
    return names


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No ``MLCYCLE_*`` variable but the ones a test sets, run from an empty folder."""
    for name in list(os.environ):
        if name.upper().startswith("MLCYCLE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield monkeypatch


def test_every_documented_variable_is_checked_here() -> None:
    documented = documented_variables()
    assert {"MLCYCLE_KAFKA_BOOTSTRAP", "MLCYCLE_API_KEYS", "MLCYCLE_ES_URL"} <= documented
    assert documented <= set(CASES), sorted(documented - set(CASES))


@pytest.mark.parametrize("variable", sorted(CASES))
def test_a_variable_lands_in_its_section_with_its_meaning(
    env: pytest.MonkeyPatch, variable: str
) -> None:
    raw, expected = CASES[variable]
    env.setenv(variable, raw)
    settings = load_settings()
    for path, wanted in expected.items():
        found = value_at(settings, path)
        if callable(wanted):
            assert wanted(found), path
        else:
            assert found == wanted, path
    # Nothing else moved: the variable changed only itself and what derives from it.
    env.delenv(variable)
    before, after = settings_to_env(load_settings()), settings_to_env(settings)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    assert changed == {variable} | DERIVED.get(variable, set())


@pytest.mark.parametrize("variable", sorted(CASES))
def test_a_variable_means_the_same_as_its_flat_override(
    env: pytest.MonkeyPatch, variable: str
) -> None:
    raw, _ = CASES[variable]
    env.setenv(variable, raw)
    from_environment = load_settings()
    env.delenv(variable)
    flat = variable.removeprefix("MLCYCLE_").lower()
    if flat.startswith("topics__"):
        override: dict[str, object] = {"topics": {flat.removeprefix("topics__"): raw}}
    else:  # a JSON variable is its decoded value in code
        override = {flat: json.loads(raw) if raw.startswith("{") else raw}
    assert load_settings(**override) == from_environment


def test_defaults_without_any_variable(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.kafka.embedded and settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.store.es_url == "" and settings.cache.redis_url == ""
    assert settings.cache.embedded_redis is True
    assert settings.edge.api_keys == ()
    assert settings.edge.max_body_bytes == 16 * 1024 * 1024
    assert settings.edge.max_batch_records == 10_000
    assert settings.labeler.classes_of("hate_offensive") == 3
    assert settings.labeler.classes_of("unknown task") == 2
    assert settings.inference.predict_threshold is None
    assert settings.inference.predict_retries == 2
    assert settings.trainer.served_models_dir == str(settings.trainer.models_dir)
    # A source checkout's behavioural suite is found without being configured.
    assert settings.featurizer.behaviour_suite == CHECKOUT_SUITE and CHECKOUT_SUITE.is_dir()
    assert settings.modelserver.target == "127.0.0.1:8500"


def test_the_data_dir_moves_every_path_left_to_its_default(env: pytest.MonkeyPatch) -> None:
    env.setenv("MLCYCLE_DATA_DIR", "/srv/state")
    moved = load_settings()
    assert moved.store.sqlite_path == Path("/srv/state/store.sqlite3")
    assert moved.featurizer.artifacts_dir == Path("/srv/state/artifacts")
    assert moved.trainer.models_dir == Path("/srv/state/models")
    assert moved.trainer.study_storage == "sqlite:////srv/state/trainer-studies.sqlite3"

    env.setenv("MLCYCLE_ARTIFACTS_DIR", "/artifacts")
    env.setenv("MLCYCLE_MODELS_DIR", "/models")
    env.setenv("MLCYCLE_SQLITE_PATH", "/db/store.sqlite3")
    env.setenv("MLCYCLE_STUDY_STORAGE", "sqlite:////db/studies.sqlite3")
    pinned = load_settings()
    assert pinned.store.sqlite_path == Path("/db/store.sqlite3")
    assert pinned.featurizer.artifacts_dir == Path("/artifacts")
    assert pinned.trainer.models_dir == Path("/models")
    assert pinned.trainer.study_storage == "sqlite:////db/studies.sqlite3"


def test_an_empty_path_variable_means_its_default(env: pytest.MonkeyPatch) -> None:
    env.setenv("MLCYCLE_DATA_DIR", "/srv/state")
    env.setenv("MLCYCLE_ARTIFACTS_DIR", "")
    env.setenv("MLCYCLE_MODEL_SERVER_TARGET", "")
    settings = load_settings()
    assert settings.featurizer.artifacts_dir == Path("/srv/state/artifacts")
    assert settings.modelserver.target == "127.0.0.1:8500"


def test_replace_re_resolves_the_paths_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "a", models_dir=tmp_path / "pinned")
    moved = settings.replace(data_dir=tmp_path / "b")
    assert moved.data_dir == tmp_path / "b"
    assert moved.store.sqlite_path == tmp_path / "b" / "store.sqlite3"
    assert moved.featurizer.artifacts_dir == tmp_path / "b" / "artifacts"
    studies = (tmp_path / "b" / "trainer-studies.sqlite3").resolve()
    assert moved.trainer.study_storage == f"sqlite:///{studies}"
    assert moved.trainer.models_dir == tmp_path / "pinned"  # set, so it stays
    # Only what was replaced changed, and the original is untouched.
    assert moved.replace(data_dir=tmp_path / "a") == settings
    assert settings.store.sqlite_path == tmp_path / "a" / "store.sqlite3"


def test_replace_and_copies_take_flat_names(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    replaced = settings.replace(predict_retries=5, api_keys="a,b", model_server_port=8600)
    assert replaced.inference.predict_retries == 5
    assert replaced.edge.api_keys == ("a", "b")
    assert replaced.modelserver.target == "127.0.0.1:8600"  # re-resolved from the new port
    assert settings.model_copy(update={"predict_retries": 5}).inference.predict_retries == 5
    assert settings.model_copy() == settings


def everything_changed(tmp_path: Path) -> Settings:
    """Settings with a non-default value in every kind of field there is."""
    return load_settings(
        data_dir=tmp_path,
        log_level="DEBUG",
        log_format="text",
        host="0.0.0.0",
        kafka_bootstrap="kafka:9093",
        kafka_partitions=6,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="mlcycle",
        kafka_sasl_password=SECRET,
        kafka_ssl_cafile=tmp_path / "kafka-ca.crt",
        topics={"labels": "labels.v2", "dlq_suffix": ".dead"},
        es_url="https://es:9200",
        es_username="mlcycle",
        es_password=SECRET,
        es_ca_certs=tmp_path / "es-ca.crt",
        redis_url="rediss://cache:6380/0",
        redis_password=SECRET,
        redis_ca_file=tmp_path / "redis-ca.crt",
        embedded_redis=False,
        api_keys=("a", "b"),
        api_keys_file=tmp_path / "keys",
        max_body_bytes=4096,
        label_classes={"toxicity": 2, "stance": 3},
        split_fractions=(0.7, 0.2, 0.1),
        label_threshold=0.6,
        artifacts_dir=tmp_path / "shared",
        model_name="abuse",
        bless_metric="pr_auc",
        auto_promote=False,
        model_server_base_path="/models",
        model_server_target="serving:8500",
        predict_threshold=0.7,
        rate_limit_rps=2.5,
        rollout_policy_file=tmp_path / "rollout.json",
        retraining_policy_file=tmp_path / "retraining.json",
        retraining_check_s=30.0,
        retraining_metrics_port=19407,
    )


def test_settings_to_env_round_trips_exactly(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for settings in (load_settings(data_dir=tmp_path), everything_changed(tmp_path)):
        variables = settings_to_env(settings)
        assert all(name.startswith("MLCYCLE_") for name in variables)
        assert all(isinstance(value, str) for value in variables.values())
        for name, value in variables.items():
            env.setenv(name, value)
        child = load_settings()
        assert child == settings
        assert child.model_dump() == settings.model_dump()
        assert settings_to_env(child) == variables
        for name in variables:
            env.delenv(name)


def test_settings_to_env_writes_every_documented_variable(tmp_path: Path) -> None:
    written = set(settings_to_env(everything_changed(tmp_path)))
    documented = documented_variables()
    assert documented <= written, sorted(documented - written)
    # An unset threshold is left out, so the child reads "empty: the model's own".
    assert "MLCYCLE_PREDICT_THRESHOLD" not in settings_to_env(load_settings(data_dir=tmp_path))


def test_unknown_names_are_refused_without_echoing_the_other_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as refused:
        load_settings(api_keys=SECRET, es_api_key=SECRET, predict_retires=5)
    assert "predict_retires" in str(refused.value)
    assert SECRET not in str(refused.value)

    settings = load_settings(data_dir=tmp_path, api_keys=SECRET)
    for attempt in (
        lambda: settings.replace(max_body_byte=1),
        lambda: settings.model_copy(update={"max_body_byte": 1}),
        lambda: Settings(api_keys=SECRET, max_body_byte=1),
    ):
        with pytest.raises(ValueError) as refused:
            attempt()
        assert "max_body_byte" in str(refused.value)
        assert SECRET not in str(refused.value)


@pytest.mark.parametrize(
    ("variable", "raw", "named"),
    [
        ("MLCYCLE_PREDICT_RETRIES", "-1", "inference.predict_retries"),
        ("MLCYCLE_INFERENCE_PORT", "http", "inference.port"),
        ("MLCYCLE_MAX_BODY_BYTES", "10", "edge.max_body_bytes"),
        ("MLCYCLE_KAFKA_PARTITIONS", "0", "kafka.partitions"),
        ("MLCYCLE_EMBEDDED_REDIS", "maybe", "cache.embedded_redis"),
        ("MLCYCLE_BLESS_METRIC", "auc", "trainer.bless_metric"),
        ("MLCYCLE_MODEL_NAME", "../escape", "trainer.model_name"),
        ("MLCYCLE_HUMAN_ACCURACY", "0.4", "labeler.human_accuracy"),
        ("MLCYCLE_SPLIT_FRACTIONS", "[0.5, 0.5, 0.5]", "labeler.split_fractions"),
        ("MLCYCLE_PREDICT_THRESHOLD", "2", "inference.predict_threshold"),
        ("MLCYCLE_LOG_FORMAT", "xml", "log_format"),
    ],
)
def test_an_invalid_value_names_its_section_and_field(
    env: pytest.MonkeyPatch, variable: str, raw: str, named: str
) -> None:
    env.setenv("MLCYCLE_API_KEYS", SECRET)
    env.setenv(variable, raw)
    with pytest.raises(ValidationError) as refused:
        load_settings()
    assert [".".join(map(str, error["loc"])) for error in refused.value.errors()] == [named]
    assert named in str(refused.value)
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize(
    ("variable", "named"),
    [
        ("MLCYCLE_LABEL_CLASSES", "labeler.classes"),
        ("MLCYCLE_SPLIT_FRACTIONS", "labeler.split_fractions"),
    ],
)
def test_a_variable_that_is_not_json_names_its_section_and_field(
    env: pytest.MonkeyPatch, variable: str, named: str
) -> None:
    env.setenv("MLCYCLE_API_KEYS", SECRET)
    env.setenv(variable, "toxicity=2")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert named in str(refused.value) and variable in str(refused.value)
    assert SECRET not in str(refused.value)


def test_a_data_dir_that_is_not_a_path_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as refused:
        load_settings(data_dir=5)
    assert [error["loc"] for error in refused.value.errors()] == [("data_dir",)]


def test_sections_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ValidationError):
        settings.inference.predict_retries = 9  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.data_dir = tmp_path / "other"  # type: ignore[misc]
