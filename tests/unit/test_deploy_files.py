"""docker-compose.yml and the Kubernetes base agree with the code they run.

No container engine runs here, so these files are checked statically: they
parse, every mlcycle command they start exists in the CLI, and the ports they
publish are the ones the services listen on by default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from mlcycle.cli import app
from mlcycle.common.settings import load_settings
from mlcycle.modelserver.flags import ModelServerOptions, parse_flags

ROOT = Path(__file__).resolve().parents[2]
K8S_BASE = ROOT / "deploy" / "k8s" / "base"


def _cli_exists(argv: list[str]) -> bool:
    """True if ``argv`` (``mlcycle sub sub ...``) names a real command of the CLI."""
    assert argv[0] == "mlcycle"
    command = get_command(app)
    for word in argv[1:]:
        if word.startswith("-"):
            break
        commands = getattr(command, "commands", None)
        if commands is None:
            break
        if word not in commands:
            return False
        command = commands[word]
    return not hasattr(command, "commands")


def _k8s_documents() -> list[dict]:
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization["resources"]:
        assert (K8S_BASE / resource).is_file(), f"kustomization lists missing {resource}"
        docs.extend(d for d in yaml.safe_load_all((K8S_BASE / resource).read_text()) if d)
    return docs


def test_compose_services_run_real_commands_on_default_ports() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    settings = load_settings()
    mlcycle_services = {
        name: spec
        for name, spec in compose["services"].items()
        if str(spec.get("image", "")).startswith("mlcycle/")
    }
    assert {"collector", "collector-indexer", "labeler", "labeler-stream"} <= set(mlcycle_services)
    for name, spec in mlcycle_services.items():
        assert _cli_exists(spec["command"]), f"{name}: {spec['command']} is not a CLI command"
        env = spec["environment"]
        if name != "retrainer":  # it calls the services' APIs only
            assert env["MLCYCLE_KAFKA_BOOTSTRAP"] and env["MLCYCLE_ES_URL"]
    publish = "${PUBLISH_HOST:-127.0.0.1}"
    assert mlcycle_services["collector"]["ports"] == [
        f"{publish}:{settings.collector.port}:{settings.collector.port}"
    ]
    assert mlcycle_services["inference"]["ports"] == [
        f"{publish}:{settings.inference.port}:{settings.inference.port}"
    ]
    # The other APIs are reached on the compose network only, on their default ports.
    assert "ports" not in mlcycle_services["labeler"]
    assert mlcycle_services["labeler"]["expose"] == [str(settings.labeler.port)]


def test_k8s_deployments_run_real_commands_and_probe_real_ports() -> None:
    settings = load_settings()
    deployments = [d for d in _k8s_documents() if d["kind"] == "Deployment"]
    expected_port = {
        "collector": settings.collector.port,
        "collector-indexer": settings.collector.indexer_metrics_port,
        "labeler": settings.labeler.port,
        "labeler-stream": settings.labeler.stream_metrics_port,
        "featurizer": settings.featurizer.port,
        "featurizer-batch": settings.featurizer.batch_metrics_port,
        "trainer": settings.trainer.port,
        "modelserver": settings.modelserver.port,
        "inference": settings.inference.port,
        "inference-stream": settings.inference.stream_metrics_port,
        "inference-feedback": settings.monitoring.feedback_metrics_port,
        "retrainer": settings.rollouts.retraining_metrics_port,
    }
    assert {d["metadata"]["name"] for d in deployments} == set(expected_port)
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        if name == "modelserver":
            continue  # TF Serving's image, checked below
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{name}: selector does not match its pods"
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        argv = container.get("args") or container.get("command")
        assert _cli_exists(argv), f"{name}: {argv} is not a CLI command"
        ports = {p["containerPort"] for p in container["ports"]}
        assert expected_port[name] in ports


def _tf_serving_specs() -> list[tuple[str, str, list[str]]]:
    """(where, image, flags) of every place that runs the tensorflow/serving image."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    found = [
        (f"compose {name}", spec["image"], spec["command"])
        for name, spec in compose["services"].items()
        if str(spec.get("image", "")).startswith("tensorflow/serving:")
    ]
    for doc in _k8s_documents():
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith("tensorflow/serving:"):
                where = f"k8s {doc['metadata']['name']}"
                found.append((where, container["image"], container["args"]))
    return found


def test_tf_serving_runs_with_flags_the_local_model_server_accepts_too() -> None:
    settings = load_settings()
    defaults = ModelServerOptions.from_settings(
        settings.modelserver, host=settings.host, model_name=settings.trainer.model_name
    )
    specs = _tf_serving_specs()
    assert {where for where, _, _ in specs} == {"compose modelserver", "k8s modelserver"}
    for where, _image, flags in specs:
        options = parse_flags(flags, defaults)
        assert options.port == settings.modelserver.port, where
        assert options.rest_api_port == settings.modelserver.rest_port, where
        assert options.model_config_file == "/models/models.config", where
        # The registry's new canary and shadow labels may wait for their versions to load.
        assert options.allow_version_labels_for_unavailable_models, where


@pytest.mark.parametrize("argv", [["mlcycle", "collector", "nope"], ["mlcycle", "nope"]])
def test_the_command_check_itself_rejects_unknown_commands(argv: list[str]) -> None:
    assert not _cli_exists(argv)
