"""Promotion and rollback reach a running model server through models.config alone.

The registry rewrites ``models.config`` (TF Serving's ``ModelServerConfig``);
the model server, started the way the stack and the containers start it
(``--model_config_file`` with a poll period), follows it by itself: the
promoted version is loaded and served, the one it replaces unloaded, and a
rollback brings the earlier one back. The answers over gRPC name the version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from mlcycle.common.errors import NotFound
from mlcycle.common.settings import Settings, load_settings
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.serving import ensure_serving_config, serving_config_path
from mlcycle.modelserver import ModelServer, ModelServerOptions
from mlcycle.modelserver.tensors import to_tensor_proto
from mlcycle.trainer.registry import ModelRegistry
from tests.integration.modelserver_models import export_sparse_scorer

pytestmark = pytest.mark.integration
NAME = "toxicity"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path)


@pytest.fixture
def registry(settings: Settings) -> Iterator[ModelRegistry]:
    store = SqliteStore(settings.store.sqlite_path)
    yield ModelRegistry(settings.trainer, store)
    store.close()


def blessed_version(registry: ModelRegistry, version: int) -> None:
    """A real SavedModel at <models>/<name>/<version>/, registered and blessed."""
    folder = registry.settings.models_dir / NAME / str(version)
    export_sparse_scorer(folder, bias=float(version))
    registry.register(
        NAME,
        version,
        job=f"job-{version}",
        transform="tf-1",
        label_run="lr-1",
        metrics={"dev": {"roc_auc": 0.9}},
        params={},
        path=str(folder),
    )
    registry.bless(NAME, version, "beats production", compared_to=None)


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


def test_promote_and_rollback_change_what_the_model_server_serves(
    settings: Settings, registry: ModelRegistry
) -> None:
    config = ensure_serving_config(settings.trainer.models_dir)
    options = ModelServerOptions(
        port=0,
        rest_api_port=None,
        model_config_file=str(config),
        model_config_file_poll_wait_seconds=0.2,
        file_system_poll_wait_seconds=0.2,
    )
    server = ModelServer(options).start(wait_for_models=False)
    try:
        blessed_version(registry, 1)
        blessed_version(registry, 2)
        registry.promote(NAME, 1, "first release")
        wait_until(server, {1})
        assert served_version(server) == 1

        registry.promote(NAME, 2, "better on dev")
        wait_until(server, {2})
        assert served_version(server) == 2

        registry.rollback(NAME, "v2 misbehaves")
        wait_until(server, {1})
        assert served_version(server) == 1
    finally:
        server.stop()
    assert "specific" in serving_config_path(settings.trainer.models_dir).read_text()
