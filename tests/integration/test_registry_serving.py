"""Rollouts, promotion and rollback reach a running model server through models.config alone.

The registry rewrites ``models.config`` (TF Serving's ``ModelServerConfig``: the
``specific`` versions to load and the ``stable``, ``canary`` and ``shadow``
labels); the model server, started the way the stack and the containers start it
(``--model_config_file`` with a poll period), follows it by itself. The answers
over gRPC name the version; REST answers by label as by version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from mlcycle.common.errors import NotFound
from mlcycle.common.settings import Settings
from mlcycle.contracts.serving import ensure_serving_config, serving_config_path
from mlcycle.modelserver import ModelServer, ModelServerOptions
from mlcycle.modelserver.tensors import to_tensor_proto
from mlcycle.trainer.registry import ModelRegistry
from tests.fixtures.registry import NAME, register
from tests.integration.modelserver_models import export_sparse_scorer

pytestmark = pytest.mark.integration


def blessed_version(registry: ModelRegistry, version: int) -> None:
    """A real SavedModel at <models>/<name>/<version>/, registered and blessed."""
    export_sparse_scorer(registry.settings.models_dir / NAME / str(version), bias=float(version))
    register(
        registry,
        version,
        exported=False,
        job=f"job-{version}",
        metrics={"dev": {"roc_auc": 0.9}},
        bless="beats production",
    )


def served_version(server: ModelServer) -> int:
    """The version a Predict without a version is answered by."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.inputs["indices"].CopyFrom(to_tensor_proto(np.array([[1, 2]], np.int64)))
    request.inputs["values"].CopyFrom(to_tensor_proto(np.array([[1.0, 0.5]], np.float32)))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=10).model_spec.version.value


def wait_until(server: ModelServer, available: set[int], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    now: set[int] = set()
    while time.monotonic() < deadline:
        try:
            states = server.manager.status(NAME)
        except NotFound:
            states = []
        now = {s.version for s in states if s.state == "AVAILABLE"}
        if now == available:
            return
        time.sleep(0.1)
    raise AssertionError(f"AVAILABLE versions never became {available}; last {now}")


def predict_by_label(server: ModelServer, label: str) -> int:
    """The version a Predict naming ``label`` (ModelSpec.version_label) is answered by."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.model_spec.version_label = label
    request.inputs["indices"].CopyFrom(to_tensor_proto(np.array([[1, 2]], np.int64)))
    request.inputs["values"].CopyFrom(to_tensor_proto(np.array([[1.0, 0.5]], np.float32)))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=10).model_spec.version.value


def rest_predict(server: ModelServer, route: str) -> list:
    """REST predictions of one instance at ``/v1/models/<NAME>/<route>:predict``."""
    body = {"inputs": {"indices": [[1, 2]], "values": [[1.0, 0.5]]}}
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/{NAME}/{route}:predict"
    response = httpx.post(url, json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["outputs"]


def wait_for_labels(server: ModelServer, labels: dict[str, int], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while server.manager.labels(NAME) != labels:
        if time.monotonic() > deadline:
            raise AssertionError(f"labels never became {labels}: {server.manager.labels(NAME)}")
        time.sleep(0.1)


@pytest.fixture
def server(settings: Settings) -> Iterator[ModelServer]:
    """Started as the stack starts it: the registry's config file, polled; labels allowed to wait
    for their versions, as the compose file and the k8s manifests run TF Serving."""
    config = ensure_serving_config(settings.trainer.models_dir)
    options = ModelServerOptions(
        port=0,
        rest_api_port=0,
        model_config_file=str(config),
        model_config_file_poll_wait_seconds=0.2,
        file_system_poll_wait_seconds=0.2,
        allow_version_labels_for_unavailable_models=True,
    )
    server = ModelServer(options).start(wait_for_models=False)
    yield server
    server.stop()


def test_a_rollout_and_a_rollback_change_what_the_model_server_serves(
    settings: Settings, registry: ModelRegistry, server: ModelServer
) -> None:
    for version in (1, 2, 3):
        blessed_version(registry, version)
    registry.promote(NAME, 1, "first release")
    wait_until(server, {1})
    wait_for_labels(server, {"stable": 1})
    assert served_version(server) == 1

    registry.start_shadow(NAME, 2, "try it", share=1.0, rollout="r-1")
    wait_until(server, {1, 2})
    wait_for_labels(server, {"stable": 1, "shadow": 2})
    assert predict_by_label(server, "shadow") == 2
    registry.start_canary(NAME, 2, "shadow agrees", share=0.05, rollout="r-1")
    wait_for_labels(server, {"stable": 1, "canary": 2})
    assert predict_by_label(server, "canary") == 2 and predict_by_label(server, "stable") == 1

    registry.promote(NAME, 2, "every step passed", rollout="r-1")
    wait_for_labels(server, {"stable": 2})
    wait_until(server, {1, 2})  # the previous production stays loaded: a rollback is instant
    assert predict_by_label(server, "stable") == 2

    registry.rollback(NAME, "v2 misbehaves")
    wait_for_labels(server, {"stable": 1})
    wait_until(server, {1})
    assert served_version(server) == 1
    assert "specific" in serving_config_path(settings.trainer.models_dir).read_text()


def test_stable_canary_and_shadow_labels_resolve_over_grpc_and_rest(
    registry: ModelRegistry, server: ModelServer
) -> None:
    for version in (1, 2, 3):
        blessed_version(registry, version)
    registry.promote(NAME, 1, "first release")
    # Three labels on three versions at once: a pointer the moves never make together (one
    # candidate at a time), written by the registry all the same.
    pointer = registry.pointer(NAME)
    pointer.canary, pointer.canary_share, pointer.shadow, pointer.shadow_share = 2, 0.1, 3, 1.0
    registry.versions.save_with_pointer([], pointer)
    registry.write_serving_config()
    wait_until(server, {1, 2, 3})
    wait_for_labels(server, {"stable": 1, "canary": 2, "shadow": 3})
    for label, version in (("stable", 1), ("canary", 2), ("shadow", 3)):
        assert predict_by_label(server, label) == version
        assert rest_predict(server, f"labels/{label}") == rest_predict(
            server, f"versions/{version}"
        )
    assert rest_predict(server, "labels/canary") != rest_predict(server, "labels/shadow")
    status = httpx.get(f"http://127.0.0.1:{server.rest_port}/v1/models/{NAME}/labels/shadow")
    assert [s["version"] for s in status.json()["model_version_status"]] == ["3"]
    unknown = httpx.post(
        f"http://127.0.0.1:{server.rest_port}/v1/models/{NAME}/labels/blue:predict",
        json={"inputs": {"indices": [[1]], "values": [[1.0]]}},
    )
    assert unknown.status_code == 400
    assert "Unrecognized servable version label: blue" in unknown.json()["error"]
