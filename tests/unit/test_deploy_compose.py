"""docker-compose.yml passes the compose-spec schema and is wired the way compose needs.

The schema check is check-jsonschema with the compose-spec schema it ships (the file
docker compose itself validates against). The rest is what a schema cannot see:
dependencies that exist and wait for health, named volumes only, required variables
that fail loudly, no committed secrets, and the topics the code uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mlcycle.common.settings import load_settings
from tests.fixtures.deploy import COMPOSE, ROOT, compose_schema_error, load_compose

INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(:?[?-])?([^}]*)\}")
REQUIRED = {"MLCYCLE_API_KEYS", "RETRAIN_KEY", "ELASTIC_PASSWORD", "MLCYCLE_REDIS_PASSWORD"}
# The only ports on the host: the ingest and prediction APIs (the edge, with keys).
PUBLISHED = {"collector": 8001, "inference": 8000}


def _services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def _has_healthcheck(name: str, spec: dict[str, Any]) -> bool:
    """A healthcheck in compose, or the HEALTHCHECK of the Dockerfile target it builds."""
    if "healthcheck" in spec:
        return not spec["healthcheck"].get("disable", False)
    target = spec.get("build", {}).get("target")
    if target is None:
        return False
    stage = (ROOT / "Dockerfile").read_text().split(f" AS {target}\n", 1)[1].split("\nFROM ")[0]
    return "\nHEALTHCHECK " in stage


@pytest.mark.integration
def test_compose_file_passes_the_compose_spec_schema() -> None:
    assert compose_schema_error(COMPOSE) is None


@pytest.mark.integration
@pytest.mark.parametrize(
    ("good", "bad"),
    [
        ("condition: service_healthy }", "condition: service_heathy }"),
        ('ports: ["${PUBLISH_HOST:-127.0.0.1}:8001:8001"]', 'ports: "8001:8001"'),
        ("    restart: unless-stopped\n", "    restart: unless-stopped\n    replicas: 2\n"),
    ],
)
def test_the_schema_check_rejects_a_broken_file(tmp_path: Path, good: str, bad: str) -> None:
    text = COMPOSE.read_text()
    assert good in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(good, bad, 1))
    assert compose_schema_error(broken) is not None


def test_dependencies_exist_and_wait_for_health_or_completion() -> None:
    services = _services()
    for name, spec in services.items():
        for dependency, how in spec.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = how["condition"]
            if dependency == "kafka-topics":
                assert condition == "service_completed_successfully", name
            else:
                assert condition == "service_healthy", f"{name} -> {dependency}: {condition}"
                assert _has_healthcheck(dependency, services[dependency]), dependency
    assert services["kafka-topics"]["restart"] == "no"


def test_state_lives_in_named_volumes() -> None:
    compose = load_compose()
    declared = set(compose["volumes"])
    assert {"artifacts", "models", "kafka-data", "es-data", "redis-data"} <= declared
    used = set()
    for name, spec in compose["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            assert source in declared, f"{name}: {volume} is not a named volume"
            used.add(source)
    assert used == declared


def test_required_variables_fail_loudly_and_are_documented() -> None:
    text = COMPOSE.read_text()
    found = {m.group(1): m.group(2) for m in INTERPOLATION.finditer(text)}
    assert {v for v, op in found.items() if op == ":?"} == REQUIRED
    assert all(op in (":?", ":-") for op in found.values()), found
    example = (ROOT / ".env.example").read_text()
    documented = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", example, flags=re.M))
    assert set(found) <= set(documented), set(found) - set(documented)
    for variable in REQUIRED:
        assert documented[variable] == "", f".env.example must not carry a value for {variable}"


def test_no_secret_is_written_in_the_file() -> None:
    secret_like = re.compile(r"KEY|PASSWORD|SECRET|TOKEN")
    for name, spec in _services().items():
        for key, value in (spec.get("environment") or {}).items():
            if secret_like.search(key) and key != "MLCYCLE_AUTO_PROMOTE":
                assert str(value).startswith("${"), f"{name}: {key} is written in the file"


def test_kafka_topics_job_creates_exactly_the_topics_the_code_uses() -> None:
    services = _services()
    job = services["kafka-topics"]["environment"]
    settings = load_settings()
    topics = job["TOPICS"].split()
    assert len(topics) == len(set(topics))
    assert sorted(topics) == sorted(settings.kafka.topics.all_with_dlqs())
    assert "$$TOPICS" in services["kafka-topics"]["command"][0]
    shared = services["collector"]["environment"]
    assert job["PARTITIONS"] == shared["MLCYCLE_KAFKA_PARTITIONS"]
    assert job["REPLICATION_FACTOR"] == shared["MLCYCLE_KAFKA_REPLICATION_FACTOR"]
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "broker,controller" == kafka["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper


def test_elasticsearch_is_single_node_with_security_on_and_the_services_log_in() -> None:
    services = _services()
    es = services["elasticsearch"]["environment"]
    assert es["discovery.type"] == "single-node"
    assert es["xpack.security.enabled"] == "true"
    assert es["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD:?")
    assert "$${ELASTIC_PASSWORD}" in services["elasticsearch"]["healthcheck"]["test"][1]
    for name, spec in services.items():
        env = spec.get("environment") or {}
        if "MLCYCLE_ES_URL" in env:
            assert env["MLCYCLE_ES_USERNAME"] == "elastic", name
            assert env["MLCYCLE_ES_PASSWORD"] == es["ELASTIC_PASSWORD"], name


def test_only_the_collector_and_inference_are_published_on_loopback_by_default() -> None:
    services = _services()
    published = {name: spec["ports"] for name, spec in services.items() if spec.get("ports")}
    assert set(published) == set(PUBLISHED)
    for name, port in PUBLISHED.items():
        (mapping,) = published[name]
        assert mapping == f"${{PUBLISH_HOST:-127.0.0.1}}:{port}:{port}", name
    # The model server (REST :predict has no keys) and the featurizer's gRPC stay inside.
    assert "ports" not in services["modelserver"] and "ports" not in services["featurizer"]
    example = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M))
    assert example["PUBLISH_HOST"] == "127.0.0.1"


def test_redis_requires_the_password_the_inference_services_send() -> None:
    services = _services()
    redis = services["redis"]
    password = redis["environment"]["REDIS_PASSWORD"]
    assert password.startswith("${MLCYCLE_REDIS_PASSWORD:?")
    assert redis["environment"]["REDISCLI_AUTH"] == password  # the health check logs in
    assert '--requirepass "$$REDIS_PASSWORD"' in redis["command"][0]
    users = [n for n, s in services.items() if "MLCYCLE_REDIS_URL" in s.get("environment", {})]
    assert set(users) == {"inference", "inference-stream", "inference-feedback"}
    for name in users:
        assert services[name]["environment"]["MLCYCLE_REDIS_PASSWORD"] == password, name


def test_tf_serving_polls_the_models_volume_read_only() -> None:
    modelserver = _services()["modelserver"]
    assert modelserver["volumes"] == ["models:/models:ro"]
    assert any(
        f.startswith("--model_config_file_poll_wait_seconds=") for f in modelserver["command"]
    )
    assert "models:/models" in _services()["trainer"]["volumes"]
    # A new canary or shadow label is refused by TF Serving without it.
    assert "--allow_version_labels_for_unavailable_models=true" in modelserver["command"]


def test_the_retrainer_runs_the_watch_loop_on_the_services_names_with_its_own_key() -> None:
    retrainer = _services()["retrainer"]
    command = retrainer["command"]
    assert command[1:3] == ["retrain", "watch"]
    assert command[command.index("--urls") + 1] == "http://{service}:{port}"
    env = retrainer["environment"]
    assert env["MLCYCLE_SERVICE_KEY"].startswith("${RETRAIN_KEY:?")
    assert "MLCYCLE_ES_URL" not in env and "MLCYCLE_KAFKA_BOOTSTRAP" not in env  # APIs only
    assert "volumes" not in retrainer  # the trainer keeps the runs
    port = load_settings().rollouts.retraining_metrics_port
    assert env["MLCYCLE_RETRAINING_METRICS_PORT"] == str(port)
    assert f":{port}/healthz" in retrainer["healthcheck"]["test"][-1]
    for service in ("collector", "labeler", "featurizer", "trainer", "inference"):
        assert service in _services()  # each one a --urls name
