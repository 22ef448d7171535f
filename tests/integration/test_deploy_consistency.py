"""docker-compose.yml and the Kubernetes overlays describe the same system.

Every compose service has a Kubernetes workload of the same name, with the same image,
command, ports, mounts and ``MLCYCLE_*`` variables; every container runs as a non-root
user; and the topics created in compose, in the dev overlay and in the prod overlay are
the ones the code uses (read from the code's settings, not listed again here).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from mlcycle.common.settings import load_settings
from tests.fixtures.deploy import DOCKERFILE, OVERLAYS, load_compose, pod_specs, render

# A subprocess: kubectl renders the overlays compared with compose.
pytestmark = pytest.mark.integration

# What prod adds to the compose variables: how the clients log in to the operators'
# clusters (TLS, SASL), and the API keys as a mounted file instead of a variable.
PROD_SECURITY = {
    "MLCYCLE_KAFKA_SECURITY_PROTOCOL",
    "MLCYCLE_KAFKA_SASL_MECHANISM",
    "MLCYCLE_KAFKA_SASL_USERNAME",
    "MLCYCLE_KAFKA_SASL_PASSWORD",
    "MLCYCLE_KAFKA_SSL_CAFILE",
    "MLCYCLE_ES_CA_CERTS",
}
# Workloads that only call mlcycle's own APIs (no Kafka, no store): nothing to add in prod.
API_CLIENTS_ONLY = {"retrainer"}
# Where prod mounts those CA files and the key file: read-only Secrets, not data.
SECRET_MOUNTS = "/etc/mlcycle/"

# Compose services that are not Deployments in Kubernetes: the kind each overlay uses.
INFRA_KINDS = {
    "dev": {"kafka": "StatefulSet", "elasticsearch": "StatefulSet", "kafka-topics": "Job"},
    "prod": {"kafka": "Kafka", "elasticsearch": "Elasticsearch"},
}


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(OVERLAYS[overlay]))


def _workloads(overlay: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (kind, pod spec)."""
    return {
        where.split("/")[1]: (where.split("/")[0], spec)
        for where, _, spec in pod_specs(list(rendered(overlay)))
    }


def _container_env(overlay: str, container: dict[str, Any]) -> dict[str, str | None]:
    """The container's variables (envFrom ConfigMaps resolved; None: from a Secret)."""
    configmaps = {d["metadata"]["name"]: d for d in rendered(overlay) if d["kind"] == "ConfigMap"}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]].get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def _mlcycle_services() -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in load_compose()["services"].items()
        if str(spec.get("image", "")).startswith(("mlcycle/", "tensorflow/serving:"))
    }


def _compose_ports(spec: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split(":")[-1]) for p in spec.get("ports", [])}
    return ports | {int(p) for p in spec.get("expose", [])}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_compose_service_has_a_workload_of_the_same_name(overlay: str) -> None:
    workloads = _workloads(overlay)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered(overlay)}
    for name in load_compose()["services"]:
        if name in INFRA_KINDS[overlay]:
            assert (INFRA_KINDS[overlay][name], name) in kinds, f"{overlay}: no {name}"
        elif name == "kafka-topics":
            assert overlay == "prod"  # KafkaTopic resources instead (test_topics_...)
        else:
            assert workloads.get(name, ("",))[0] == "Deployment", f"{overlay}: no Deployment {name}"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_same_image_command_ports_mounts_and_variables(overlay: str) -> None:
    workloads = _workloads(overlay)
    for name, spec in _mlcycle_services().items():
        (container,) = workloads[name][1]["containers"]
        assert container["image"] == spec["image"], name
        k8s_ports = {p["containerPort"] for p in container.get("ports", [])}
        assert k8s_ports == _compose_ports(spec), f"{name}: ports differ"
        if spec["image"].startswith("tensorflow/serving:"):
            continue  # flags: test_deploy_files; no MLCYCLE_* variables
        assert container["args"] == spec["command"], name
        compose_env = {k: v for k, v in spec["environment"].items() if k.startswith("MLCYCLE_")}
        k8s_env = {
            k: v for k, v in _container_env(overlay, container).items() if k.startswith("MLCYCLE_")
        }
        expected = set(compose_env)
        if overlay == "prod" and name not in API_CLIENTS_ONLY:
            expected |= PROD_SECURITY
            if "MLCYCLE_API_KEYS" in expected:
                expected = expected - {"MLCYCLE_API_KEYS"} | {"MLCYCLE_API_KEYS_FILE"}
        assert set(k8s_env) == expected, f"{overlay} {name}: MLCYCLE_* variables differ"
        if overlay == "dev":  # same values too, except what comes from secrets
            for key, value in compose_env.items():
                if k8s_env[key] is not None and not str(value).startswith("${"):
                    assert k8s_env[key] == str(value), f"{name}: {key}"
        compose_mounts = {v.split(":")[1]: v.endswith(":ro") for v in spec.get("volumes", [])}
        k8s_mounts = {
            m["mountPath"]: m.get("readOnly", False)
            for m in container.get("volumeMounts", [])
            if m["mountPath"] != "/tmp" and not m["mountPath"].startswith(SECRET_MOUNTS)
        }
        secret_mounts = [
            m for m in container.get("volumeMounts", []) if m["mountPath"].startswith(SECRET_MOUNTS)
        ]
        assert all(m.get("readOnly") for m in secret_mounts), name
        assert bool(secret_mounts) == (overlay == "prod" and name not in API_CLIENTS_ONLY), name
        assert k8s_mounts == compose_mounts, f"{name}: mounts differ"


def test_infrastructure_ports_match_in_dev() -> None:
    services = load_compose()["services"]
    workloads = _workloads("dev")
    for name in ("kafka", "elasticsearch", "redis"):
        (container,) = workloads[name][1]["containers"]
        assert {p["containerPort"] for p in container["ports"]} == _compose_ports(services[name])
        assert container["image"] == services[name]["image"]


def test_ports_are_the_services_defaults() -> None:
    settings = load_settings()
    services = _mlcycle_services()
    expected = {
        "collector": {settings.collector.port},
        "collector-indexer": {settings.collector.indexer_metrics_port},
        "labeler": {settings.labeler.port},
        "labeler-stream": {settings.labeler.stream_metrics_port},
        "featurizer": {settings.featurizer.port, settings.featurizer.grpc_port},
        "featurizer-batch": {settings.featurizer.batch_metrics_port},
        "trainer": {settings.trainer.port},
        "modelserver": {settings.modelserver.port, settings.modelserver.rest_port},
        "inference": {settings.inference.port},
        "inference-stream": {settings.inference.stream_metrics_port},
        "inference-feedback": {settings.monitoring.feedback_metrics_port},
        "retrainer": {settings.rollouts.retraining_metrics_port},
    }
    assert {name: _compose_ports(spec) for name, spec in services.items()} == expected


def _dockerfile_user(target: str) -> str:
    text = DOCKERFILE.read_text()
    stage = text.split(f" AS {target}\n", 1)[1].split("\nFROM ")[0]
    users = [line.split()[1] for line in stage.splitlines() if line.startswith("USER ")]
    return users[-1] if users else "root"


def _non_root(user: str) -> bool:
    return user.split(":")[0] not in ("", "0", "root")


def test_every_container_runs_as_a_non_root_user() -> None:
    services = load_compose()["services"]
    images_by_target: dict[str, str] = {}
    for spec in services.values():
        if "build" in spec:
            images_by_target[spec["image"]] = spec["build"]["target"]
    for name, spec in services.items():
        if "user" in spec:
            assert _non_root(str(spec["user"])), f"compose {name} runs as {spec['user']}"
        else:
            target = images_by_target.get(spec["image"])
            assert target is not None, f"compose {name}: no user and not built here"
            assert _non_root(_dockerfile_user(target)), f"image target {target} runs as root"
    for overlay in OVERLAYS:
        for where, _, spec in pod_specs(list(rendered(overlay))):
            for container in spec["containers"]:
                ctx = {**spec.get("securityContext", {}), **container.get("securityContext", {})}
                assert ctx.get("runAsNonRoot") is True and ctx.get("runAsUser", 0) > 0, where


def test_topics_are_the_ones_the_code_uses_everywhere() -> None:
    expected = sorted(load_settings().kafka.topics.all_with_dlqs())
    compose = load_compose()["services"]["kafka-topics"]["environment"]["TOPICS"].split()
    assert sorted(compose) == expected
    dev_job = _workloads("dev")["kafka-topics"][1]["containers"][0]
    dev_env = {e["name"]: e["value"] for e in dev_job["env"]}
    assert sorted(dev_env["TOPICS"].split()) == expected
    prod = [d["spec"]["topicName"] for d in rendered("prod") if d["kind"] == "KafkaTopic"]
    assert sorted(prod) == expected
