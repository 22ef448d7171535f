"""The model server's gRPC edge with and without keys, through TF Serving's official stubs.

Without keys it is TF Serving's open API; with keys the same stubs work once they send
``authorization`` metadata. A ReloadConfigRequest may not point a model outside the
model base directories (by path, ``..`` or a symlink), and a refused reload leaves
the served versions as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from mlcycle.common.settings import Settings, load_settings
from mlcycle.modelserver import ModelServer, ModelServerOptions
from tests.integration.modelserver_models import copy_version, export_sparse_scorer, sparse_request

pytestmark = pytest.mark.integration

INDICES = np.array([[1, 5, 9, 0]], dtype=np.int64)
VALUES = np.array([[0.5, 1.0, 0.25, 0.0]], dtype=np.float32)
ADMIN, PREDICT = "ops-secret", "app-secret"
API_KEYS = (f"ops:admin:{ADMIN}", f"app:predict:{PREDICT}")


def bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_sparse_scorer(tmp_path_factory.mktemp("exports") / "scorer")


@contextmanager
def serving(settings: Settings, scorer: Path) -> Iterator[tuple[grpc.Channel, str]]:
    """Model ``toxicity`` version 1 under the models directory, served over gRPC at the
    address given with a channel to it."""
    base = settings.trainer.models_dir / "toxicity"
    copy_version(scorer, base, 1)
    options = ModelServerOptions(
        host="127.0.0.1", port=0, rest_api_port=None, model_base_path=str(base)
    )
    server = ModelServer(
        options, settings.modelserver, models_dir=settings.trainer.models_dir, edge=settings.edge
    ).start()
    address = f"127.0.0.1:{server.grpc_port}"
    chan = grpc.insecure_channel(address)
    try:
        yield chan, address
    finally:
        chan.close()
        server.stop(grace_s=0)


def status_request(name: str = "toxicity") -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    return request


def metadata_request() -> get_model_metadata_pb2.GetModelMetadataRequest:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "toxicity"
    request.metadata_field.append("signature_def")
    return request


def served(
    models: model_service_pb2_grpc.ModelServiceStub, secret: str, name: str = "toxicity"
) -> dict[int, str]:
    response = models.GetModelStatus(status_request(name), metadata=bearer(secret), timeout=5)
    names = get_model_status_pb2.ModelVersionStatus.State
    return {s.version: names.Name(s.state) for s in response.model_version_status}


def test_without_keys_the_stock_stubs_work_unchanged(scorer: Path, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, log_level="WARNING")
    assert settings.edge.api_keys == ()
    with serving(settings, scorer) as (chan, address):
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        models = model_service_pb2_grpc.ModelServiceStub(chan)
        response = predictions.Predict(sparse_request("toxicity", INDICES, VALUES), timeout=10)
        assert set(response.outputs) >= {"probabilities"}
        assert response.model_spec.version.value == 1
        status = models.GetModelStatus(status_request(), timeout=5)
        assert [s.version for s in status.model_version_status] == [1]
        signatures = predictions.GetModelMetadata(metadata_request(), timeout=5)
        assert "signature_def" in signatures.metadata


def test_with_keys_the_stock_stubs_work_when_they_send_a_key(scorer: Path, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, log_level="WARNING", api_keys=API_KEYS)
    with serving(settings, scorer) as (chan, address):
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        request = sparse_request("toxicity", INDICES, VALUES)
        with pytest.raises(grpc.RpcError) as caught:
            predictions.Predict(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization" in caught.value.details().lower()
        response = predictions.Predict(request, metadata=bearer(PREDICT), timeout=10)
        assert response.model_spec.version.value == 1
        # The scheme is case-insensitive, as in HTTP.
        lower = (("authorization", f"bearer {PREDICT}"),)
        assert predictions.GetModelMetadata(metadata_request(), metadata=lower, timeout=5)
        # A predict key may not reload; the refusal names the scope.
        models = model_service_pb2_grpc.ModelServiceStub(chan)
        reload = model_management_pb2.ReloadConfigRequest()
        with pytest.raises(grpc.RpcError) as caught:
            models.HandleReloadConfigRequest(reload, metadata=bearer(PREDICT), timeout=5)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "'admin' scope" in caught.value.details()


def outside_paths(tmp_path: Path, models_dir: Path) -> dict[str, Path]:
    """Base paths that name, or lead to, a SavedModel outside the models directory."""
    elsewhere = tmp_path / "elsewhere" / "toxicity"
    link = models_dir / "innocent-looking"
    link.symlink_to(elsewhere.parent, target_is_directory=True)
    return {
        "absolute": elsewhere,
        "dot-dot": models_dir / ".." / "elsewhere" / "toxicity",
        "symlink": link / "toxicity",
    }


def test_a_reload_outside_the_model_base_directory_is_refused_and_changes_nothing(
    scorer: Path, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path / "data", log_level="WARNING", api_keys=API_KEYS)
    with serving(settings, scorer) as (chan, address):
        models = model_service_pb2_grpc.ModelServiceStub(chan)
        before = served(models, PREDICT)
        assert before == {1: "AVAILABLE"}
        paths = outside_paths(tmp_path, settings.trainer.models_dir)
        copy_version(scorer, tmp_path / "elsewhere" / "toxicity", 2)
        for kind, path in paths.items():
            request = model_management_pb2.ReloadConfigRequest()
            request.config.model_config_list.config.add(name="toxicity", base_path=str(path))
            with pytest.raises(grpc.RpcError) as caught:
                models.HandleReloadConfigRequest(request, metadata=bearer(ADMIN), timeout=30)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, kind
            assert str(path) in caught.value.details(), kind
            assert "outside the model base directories" in caught.value.details()
            assert served(models, PREDICT) == before, kind
        # Inside the base directory, the admin's reload is applied.
        second = settings.trainer.models_dir / "second"
        copy_version(scorer, second, 1)
        inside = model_management_pb2.ReloadConfigRequest()
        listed = inside.config.model_config_list.config
        listed.add(name="toxicity", base_path=str(settings.trainer.models_dir / "toxicity"))
        listed.add(name="second", base_path=str(second))
        response = models.HandleReloadConfigRequest(inside, metadata=bearer(ADMIN), timeout=30)
        assert response.status.error_code == 0
        assert served(models, PREDICT) == before
        assert served(models, PREDICT, "second") == {1: "AVAILABLE"}


def test_the_inference_client_presents_its_service_key(scorer: Path, tmp_path: Path) -> None:
    from mlcycle.common.errors import Unavailable
    from mlcycle.inference.client import GrpcModelClient

    settings = load_settings(data_dir=tmp_path, log_level="WARNING", api_keys=API_KEYS)
    with serving(settings, scorer) as (chan, address):
        keyed = GrpcModelClient.for_target(address, settings.inference, service_key=PREDICT)
        keyless = GrpcModelClient.for_target(address, settings.inference)
        try:
            assert keyed.versions("toxicity") == [1]
            probabilities = keyed.predict("toxicity", 1, INDICES, VALUES)
            assert probabilities.shape == (1, 2)
            with pytest.raises(Unavailable, match="UNAUTHENTICATED"):
                keyless.versions("toxicity")
            with pytest.raises(Unavailable, match="UNAUTHENTICATED"):
                keyless.predict("toxicity", 1, INDICES, VALUES)
        finally:
            keyed.close()
            keyless.close()
