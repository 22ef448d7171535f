"""The Kubernetes overlays render with kustomize and pass the Kubernetes schemas.

Each overlay is rendered by the real kustomize (``kubectl kustomize``) and every object
in the output is validated, strictly (no unknown fields), against the Kubernetes 1.37
schemas shipped with kubernetes-validate. The Strimzi, ECK and Prometheus Operator custom
resources have no schema there: they are skipped by kind, and their settings are asserted
here instead (the PrometheusRule's in tests/unit/test_deploy_observability.py).
Then what the objects say is checked: restricted Pod Security, probes, limits, budgets,
the autoscaler, Secrets only by reference, and what the NetworkPolicies let through.
"""

from __future__ import annotations

import json
import re
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from mlcycle.cli import app
from mlcycle.common.settings import load_settings
from mlcycle.contracts.retraining import RetrainingPolicy
from tests.fixtures.deploy import (
    CUSTOM_KINDS,
    K8S,
    OVERLAYS,
    network_allows,
    pod_specs,
    render,
    restricted_violations,
    schema_errors,
)
from tests.fixtures.deploy.observability import DASHBOARD, PROMETHEUS_RULE

# A subprocess: kubectl renders every overlay.
pytestmark = pytest.mark.integration


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(OVERLAYS[overlay]))


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rendered(overlay) if d["kind"] == kind}


def _cli_exists(argv: list[str]) -> bool:
    command = get_command(app)
    for word in argv[1:]:
        if word.startswith("-"):
            break
        commands = getattr(command, "commands", None)
        if commands is None or word not in commands:
            return False
        command = commands[word]
    return not hasattr(command, "commands")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_renders_and_passes_the_kubernetes_schemas(overlay: str) -> None:
    docs = list(rendered(overlay))
    errors, skipped = schema_errors(docs)
    assert not errors, "\n".join(errors)
    validated = len(docs) - len(skipped)
    assert validated >= 30, f"only {validated} objects validated"
    if overlay == "prod":
        assert {s.split("/")[0] for s in skipped} == CUSTOM_KINDS
    else:
        assert skipped == []
    assert all(
        d["metadata"].get("namespace") == "mlcycle" for d in docs if d["kind"] != "Namespace"
    )


def test_the_schema_check_rejects_an_unknown_field_and_a_wrong_type() -> None:
    docs = [dict(d) for d in rendered("dev")]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    errors, _ = schema_errors([broken])
    assert errors and "replica" in errors[0]
    service = next(d for d in docs if d["kind"] == "Service")
    wrong = {**service, "spec": {**service["spec"], "ports": [{"port": "http"}]}}
    assert schema_errors([wrong])[0]
    unknown_kind = {"apiVersion": "v1", "kind": "Kafka", "metadata": {"name": "x"}}
    assert schema_errors([{**unknown_kind, "apiVersion": "example.com/v1", "kind": "Thing"}])[0]


def test_kustomize_errors_surface(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    (copy / "base" / "collector.yaml").unlink()
    with pytest.raises(RuntimeError, match="collector.yaml"):
        render(copy / "overlays" / "dev")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_pod_passes_restricted_pod_security(overlay: str) -> None:
    namespace = objects(overlay, "Namespace")["mlcycle"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = list(pod_specs(list(rendered(overlay))))
    assert len(pods) >= 12
    for where, metadata, spec in pods:
        assert not restricted_violations(spec), (where, restricted_violations(spec))
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "mlcycle", where


def test_the_restricted_check_catches_root_and_privilege() -> None:
    _, _, spec = next(pod_specs(list(rendered("dev"))))
    container = spec["containers"][0]
    as_root = {
        **spec,
        "securityContext": {**spec["securityContext"], "runAsUser": 0},
        "containers": [{**container, "securityContext": {"privileged": True}}],
    }
    problems = " ".join(restricted_violations(as_root))
    assert "runAsUser" in problems and "privileged" in problems and "ALL" in problems


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_container_has_probes_where_long_running_and_limits_everywhere(overlay: str) -> None:
    for where, _, spec in pod_specs(list(rendered(overlay))):
        for container in spec["containers"]:
            limits = container.get("resources", {}).get("limits", {})
            assert {"cpu", "memory"} <= limits.keys(), f"{where}: no cpu/memory limits"
            if where.startswith(("Deployment/", "StatefulSet/")):
                assert "readinessProbe" in container, f"{where}: no readiness probe"
                assert "livenessProbe" in container, f"{where}: no liveness probe"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_services_select_pods_and_name_their_ports(overlay: str) -> None:
    pods = list(pod_specs(list(rendered(overlay))))
    for name, service in objects(overlay, "Service").items():
        selector = {"matchLabels": service["spec"]["selector"]}
        matched = [
            spec
            for _, meta, spec in pods
            if selector["matchLabels"].items() <= meta.get("labels", {}).items()
        ]
        assert matched, f"Service {name} selects no pod"
        names = {p["name"] for s in matched for c in s["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, f"Service {name}: no container port {port}"


def _secret_mounts(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """mountPath -> Secret name of the container's read-only Secret volumes."""
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    return {
        m["mountPath"]: secrets[m["name"]]
        for m in container.get("volumeMounts", [])
        if m["name"] in secrets and m.get("readOnly")
    }


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_secrets_are_referenced_never_inlined(overlay: str) -> None:
    assert not objects(overlay, "Secret"), "a Secret is committed in the manifests"
    secret_like = re.compile(r"KEY|PASSWORD|SECRET|TOKEN")
    for where, _, spec in pod_specs(list(rendered(overlay))):
        for container in spec["containers"]:
            for env in container.get("env", []):
                name = env["name"]
                if name.endswith("_FILE") and "value" in env:
                    # A path, to a file of a Secret mounted read-only.
                    mounts = _secret_mounts(spec, container)
                    assert any(env["value"].startswith(p + "/") for p in mounts), (where, name)
                elif secret_like.search(name) and name != "MLCYCLE_AUTO_PROMOTE":
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{where}: {name}"
    for name, configmap in objects(overlay, "ConfigMap").items():
        assert not any(secret_like.search(k) for k in configmap.get("data", {})), name


RUNNER_URLS = "http://{service}:{port}"  # each service by its one name, at its settings' port


def _runner(spec: dict[str, Any]) -> dict[str, Any]:
    """The one container of a retraining runner's pod, checked to hold no state of its own."""
    (container,) = spec["containers"]
    assert container["image"].startswith("mlcycle/trainer:")
    assert _cli_exists(container["args"]), container["args"]
    assert container["args"][container["args"].index("--urls") + 1] == RUNNER_URLS
    # Its key from a Secret, sent as Authorization; no claim: the trainer is the one writer.
    (key,) = [e for e in container["env"] if e["name"] == "MLCYCLE_SERVICE_KEY"]
    assert key["valueFrom"]["secretKeyRef"]["name"] == "mlcycle-retrain-key"
    assert not any("persistentVolumeClaim" in v for v in spec.get("volumes", []))
    assert "envFrom" not in container  # no store, broker or data dir of its own
    return container


def test_the_retrain_cronjob_is_the_policys_schedule_trigger_and_writes_nothing() -> None:
    for overlay in OVERLAYS:
        cronjob = objects(overlay, "CronJob")["trainer-retrain"]
        job = cronjob["spec"]["jobTemplate"]["spec"]
        container = _runner(job["template"]["spec"])
        args = container["args"]
        assert args[1:3] == ["retrain", "run"], args  # a runner of the trainer's policy
        assert args[args.index("--trigger") + 1] == "schedule"
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        assert job["backoffLimit"] == 0  # a retry would only be refused by the cooldown
        # It covers a whole run, and ends before the policy would call its run abandoned.
        abandon_after_s = RetrainingPolicy().abandon_after_s
        assert RetrainingPolicy().train_time_budget_s < job["activeDeadlineSeconds"]
        assert job["activeDeadlineSeconds"] < abandon_after_s
    assert objects("dev", "CronJob")["trainer-retrain"]["spec"]["suspend"] is True


def test_the_retrainer_watches_the_triggers_with_one_replica() -> None:
    for overlay in OVERLAYS:
        deployment = objects(overlay, "Deployment")["retrainer"]
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
        container = _runner(deployment["spec"]["template"]["spec"])
        assert container["args"][1:3] == ["retrain", "watch"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        port = load_settings().rollouts.retraining_metrics_port
        assert env["MLCYCLE_RETRAINING_METRICS_PORT"] == str(port)
        assert container["ports"] == [{"name": "metrics", "containerPort": port}]


def test_storage_is_one_shared_claim_readwritemany_in_prod() -> None:
    assert objects("prod", "PersistentVolumeClaim")["shared"]["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    assert objects("dev", "PersistentVolumeClaim")["shared"]["spec"]["accessModes"] == [
        "ReadWriteOnce"
    ]
    mounts: dict[str, set[str]] = {}
    for where, _, spec in pod_specs(list(rendered("prod"))):
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in spec.get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] in claims:
                    assert claims[mount["name"]] == "shared", where
                    mounts.setdefault(mount["subPath"], set()).add(where.split("/")[1])
    assert mounts["models"] >= {"trainer", "modelserver", "inference"}
    # The retraining runners ask the trainer service: no second writer of its files.
    assert not any({"trainer-retrain", "retrainer"} & users for users in mounts.values())
    assert mounts["artifacts"] >= {"featurizer", "featurizer-batch", "trainer", "inference"}


def test_prod_scales_out_with_an_autoscaler_and_disruption_budgets() -> None:
    deployments = objects("prod", "Deployment")
    hpa = objects("prod", "HorizontalPodAutoscaler")["inference"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "inference"
    assert (
        hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    )
    budgets = objects("prod", "PodDisruptionBudget").values()
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        if deployment["spec"].get("replicas", 1) > 1:
            assert covering, f"{name} runs several replicas without a PodDisruptionBudget"
        else:
            assert not covering, f"{name}: a budget on a single replica would block drains"
    assert deployments["modelserver"]["spec"]["replicas"] >= 2
    assert deployments["inference"]["spec"]["replicas"] == hpa["spec"]["minReplicas"]


def test_prod_kafka_and_elasticsearch_keep_three_copies() -> None:
    kafka = objects("prod", "Kafka")["kafka"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert config["offsets.topic.replication.factor"] == 3
    assert config["auto.create.topics.enable"] is False
    brokers = [
        p for p in objects("prod", "KafkaNodePool").values() if "broker" in p["spec"]["roles"]
    ]
    assert sum(p["spec"]["replicas"] for p in brokers) >= 3
    settings = load_settings()
    topics = objects("prod", "KafkaTopic").values()
    assert sorted(t["spec"]["topicName"] for t in topics) == sorted(
        settings.kafka.topics.all_with_dlqs()
    )
    for topic in topics:
        assert (
            topic["spec"]["replicas"] == 3 and topic["spec"]["config"]["min.insync.replicas"] == 2
        )
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "kafka"
    shared = [c for n, c in objects("prod", "ConfigMap").items() if n.startswith("mlcycle-")][0]
    assert shared["data"]["MLCYCLE_KAFKA_REPLICATION_FACTOR"] == "3"
    assert shared["data"]["MLCYCLE_KAFKA_BOOTSTRAP"] == "kafka-kafka-bootstrap:9093"
    assert shared["data"]["MLCYCLE_ES_URL"] == "https://elasticsearch-es-http.mlcycle.svc:9200"
    (es,) = objects("prod", "Elasticsearch").values()
    assert sum(n["count"] for n in es["spec"]["nodeSets"]) >= 3
    job = objects("prod", "Job")["elasticsearch-index-settings"]
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert '"index.number_of_replicas": 2' in script
    assert settings.store.es_index_prefix + "*" in script


# What each workload must reach in prod, from the code: producers and consumers use
# Kafka, everything that reads or writes the store uses Elasticsearch, and only the
# inference side calls the model server and Redis. Nothing else may be reachable.
NEEDS: dict[str, set[str]] = {
    "collector": {"kafka", "elasticsearch"},
    "collector-indexer": {"kafka", "elasticsearch"},
    "labeler": {"kafka", "elasticsearch", "inference", "trainer"},  # its console's peers
    "labeler-stream": {"kafka", "elasticsearch"},
    "featurizer": {"elasticsearch"},
    "featurizer-batch": {"kafka", "elasticsearch"},
    "trainer": {"kafka", "elasticsearch"},
    # The retraining runners call the APIs a run goes through, nothing else.
    "trainer-retrain": {"collector", "labeler", "featurizer", "trainer", "inference"},
    "retrainer": {"collector", "labeler", "featurizer", "trainer", "inference"},
    "modelserver": set(),
    # Alarm events on monitoring, moderators' decisions on votes.reviewed.
    "inference": {"kafka", "modelserver", "redis"},
    "inference-stream": {"kafka", "elasticsearch", "modelserver", "redis"},
    "inference-feedback": {"kafka", "elasticsearch", "redis"},
    "redis": set(),
    "elasticsearch-index-settings": {"elasticsearch"},
}
OPERATOR_PODS = {
    "kafka": ({"strimzi.io/cluster": "kafka", "strimzi.io/broker-role": "true"}, 9093),
    "elasticsearch": ({"elasticsearch.k8s.elastic.co/cluster-name": "elasticsearch"}, 9200),
}
PUBLIC_PORTS = {
    "collector": 8001,
    "labeler": 8002,
    "featurizer": 8003,
    "trainer": 8004,
    "inference": 8000,
}


def _prod_pods() -> dict[str, dict[str, str]]:
    return {
        where.split("/")[1]: meta["labels"] for where, meta, _ in pod_specs(list(rendered("prod")))
    }


def test_network_policies_let_each_workload_reach_only_what_it_needs() -> None:
    policies = list(objects("prod", "NetworkPolicy").values())
    pods = _prod_pods()
    assert set(pods) == set(NEEDS), "a workload was added or removed: update NEEDS and the policies"
    targets = {name: ((labels, "mlcycle"), port) for name, (labels, port) in OPERATOR_PODS.items()}
    targets["modelserver"] = ((pods["modelserver"], "mlcycle"), 8500)
    targets["redis"] = ((pods["redis"], "mlcycle"), 6379)
    for name, port in PUBLIC_PORTS.items():
        targets[name] = ((pods[name], "mlcycle"), port)
    for source, labels in pods.items():
        for target, (dst, port) in targets.items():
            allowed = network_allows(policies, (labels, "mlcycle"), dst, port)
            assert allowed == (target in NEEDS[source]), f"{source} -> {target}:{port}"
    outside = ({"app": "ingress-nginx"}, "ingress-nginx")
    for name, port in PUBLIC_PORTS.items():
        assert network_allows(policies, outside, targets[name][0], port), name
    for name in ("modelserver", "redis"):
        assert not network_allows(policies, outside, *targets[name]), name
    monitoring = ({"app": "prometheus"}, "monitoring")
    assert network_allows(policies, monitoring, (pods["collector-indexer"], "mlcycle"), 9401)
    assert not network_allows(policies, outside, (pods["collector-indexer"], "mlcycle"), 9401)
    assert network_allows(policies, monitoring, (pods["retrainer"], "mlcycle"), 9407)
    assert not network_allows(policies, outside, (pods["retrainer"], "mlcycle"), 9407)
    dns = ({"k8s-app": "kube-dns"}, "kube-system")
    assert all(network_allows(policies, (labels, "mlcycle"), dns, 53) for labels in pods.values())


def test_the_network_check_sees_an_opened_policy() -> None:
    policies = [dict(p) for p in objects("prod", "NetworkPolicy").values()]
    pods = _prod_pods()
    src, dst = (pods["modelserver"], "mlcycle"), (OPERATOR_PODS["kafka"][0], "mlcycle")
    assert not network_allows(policies, src, dst, 9093)
    opened = [p for p in policies if p["metadata"]["name"] != "modelserver"]
    opened.append({"spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}})
    assert network_allows(opened, src, dst, 9093)


def test_kafka_listener_peers_and_elasticsearch_clients_match_the_needs() -> None:
    (listener,) = objects("prod", "Kafka")["kafka"]["spec"]["kafka"]["listeners"]
    (peer,) = listener["networkPolicyPeers"]
    (expr,) = peer["podSelector"]["matchExpressions"]
    assert set(expr["values"]) == {n for n, needs in NEEDS.items() if "kafka" in needs}
    policies = list(objects("prod", "NetworkPolicy").values())
    es = (OPERATOR_PODS["elasticsearch"][0], "mlcycle")
    pods = _prod_pods()
    for name, labels in pods.items():
        allowed = network_allows(policies, (labels, "mlcycle"), es, 9200)
        assert allowed == ("elasticsearch" in NEEDS[name]), name
    operator = ({"control-plane": "elastic-operator"}, "elastic-system")
    assert network_allows(policies, operator, es, 9200)


# The Secrets an operator creates before the first apply (docs/deploy.md), and the ones the
# operators make: Strimzi's cluster CA and ECK's HTTP CA.
SECRET_FOR = {
    "MLCYCLE_KAFKA_SASL_PASSWORD": ("mlcycle-kafka", "password"),
    "MLCYCLE_ES_USERNAME": ("mlcycle-elasticsearch", "username"),
    "MLCYCLE_ES_PASSWORD": ("mlcycle-elasticsearch", "password"),
    "MLCYCLE_REDIS_PASSWORD": ("mlcycle-redis", "password"),
}
CA_SECRET = {
    "MLCYCLE_KAFKA_SSL_CAFILE": "kafka-cluster-ca-cert",
    "MLCYCLE_ES_CA_CERTS": "elasticsearch-es-http-certs-public",
}
API_SERVICES = {"collector", "labeler", "featurizer", "trainer", "inference"}


def _settings_of(container: dict[str, Any], spec: dict[str, Any]) -> dict[str, str]:
    """The MLCYCLE_* variables a prod container gets: ConfigMaps, plain values and Secrets
    (a Secret's value stands in as ``secret:<name>/<key>``)."""
    configmaps = objects("prod", "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        env[item["name"]] = f"secret:{ref['name']}/{ref['key']}" if ref else item["value"]
    return {k: v for k, v in env.items() if k.startswith("MLCYCLE_")}


# Workloads with no Kafka or store client (the retraining runners only call the APIs).
NO_BROKER_OR_STORE_CLIENT = {
    "redis",
    "modelserver",
    "elasticsearch-index-settings",
    "trainer-retrain",
    "retrainer",
}


def test_prod_clients_log_in_over_tls_with_credentials_from_secrets() -> None:
    (listener,) = objects("prod", "Kafka")["kafka"]["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True and listener["port"] == 9093
    assert listener["authentication"] == {"type": "scram-sha-512"}
    user = objects("prod", "KafkaUser")["mlcycle"]["spec"]["authentication"]
    assert user["type"] == "scram-sha-512"
    assert user["password"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlcycle-kafka",
        "key": "password",
    }
    assert "selfSignedCertificate" not in str(objects("prod", "Elasticsearch"))  # HTTPS on
    checked = set()
    for where, _, spec in pod_specs(list(rendered("prod"))):
        name = where.split("/")[1]
        if name not in NEEDS or name in NO_BROKER_OR_STORE_CLIENT:
            continue
        (container,) = spec["containers"]
        env = _settings_of(container, spec)
        settings = load_settings(**{k.removeprefix("MLCYCLE_").lower(): v for k, v in env.items()})
        assert settings.kafka.security_protocol == "SASL_SSL", where
        assert settings.kafka.sasl_mechanism == "SCRAM-SHA-512" and settings.kafka.sasl_username
        assert settings.store.es_url.startswith("https://"), where
        for variable, (secret, key) in SECRET_FOR.items():
            if variable == "MLCYCLE_REDIS_PASSWORD" and "redis" not in NEEDS[name]:
                continue
            assert env[variable] == f"secret:{secret}/{key}", (where, variable)
        mounts = _secret_mounts(spec, container)
        for variable, secret in CA_SECRET.items():
            folder = str(Path(env[variable]).parent)
            assert mounts.get(folder) == secret, (where, variable, mounts)
        if name in API_SERVICES and where.startswith("Deployment/"):
            assert "MLCYCLE_API_KEYS" not in env, where  # a file, not a variable
            folder = str(Path(env["MLCYCLE_API_KEYS_FILE"]).parent)
            assert mounts.get(folder) == "mlcycle-api-keys", where
        checked.add(name)
    assert checked == set(NEEDS) - NO_BROKER_OR_STORE_CLIENT
    redis = objects("prod", "Deployment")["redis"]["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    redis_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in redis["env"]}
    assert redis_env["REDIS_PASSWORD"] == {"name": "mlcycle-redis", "key": "password"}
    assert redis_env["REDISCLI_AUTH"] == redis_env["REDIS_PASSWORD"]  # the probe logs in
    job = objects("prod", "Job")["elasticsearch-index-settings"]["spec"]["template"]["spec"]
    script = job["containers"][0]["args"][0]
    assert "_security/user/$ES_USER" in script and "--cacert" in script


def test_prod_carries_the_alert_rules_and_the_grafana_dashboard() -> None:
    (rule,) = objects("prod", "PrometheusRule").values()
    source = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["spec"] == source["spec"]  # what tests/unit/test_deploy_observability checks
    assert rule["metadata"]["namespace"] == "mlcycle"
    board = objects("prod", "ConfigMap")["mlcycle-grafana-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"  # the sidecar's label
    assert json.loads(board["data"]["mlcycle.json"]) == json.loads(DASHBOARD.read_text())
    assert not objects("dev", "PrometheusRule")
    assert "mlcycle-grafana-dashboard" not in objects("dev", "ConfigMap")
