"""TF Serving compatibility: the documented requests get the documented answers.

Every case of ``tests/fixtures/tfserving_corpus`` (see its README) is replayed
against a real model server over loopback: REST cases with plain HTTP, gRPC
cases with TF Serving's official stubs and messages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from mlcycle.common.settings import load_settings
from mlcycle.modelserver import ModelServer, ModelServerOptions
from mlcycle.modelserver.tensors import to_ndarray
from tests.integration.modelserver_models import copy_version, export_generic

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "tfserving_corpus"
REST_CASES = json.loads((CORPUS / "rest.json").read_text(encoding="utf-8"))
GRPC_CASES = json.loads((CORPUS / "grpc.json").read_text(encoding="utf-8"))
MESSAGES = {
    "Predict": (predict_pb2.PredictRequest, predict_pb2.PredictResponse),
    "GetModelMetadata": (
        get_model_metadata_pb2.GetModelMetadataRequest,
        get_model_metadata_pb2.GetModelMetadataResponse,
    ),
    "Classify": (
        classification_pb2.ClassificationRequest,
        classification_pb2.ClassificationResponse,
    ),
    "Regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
    "MultiInference": (inference_pb2.MultiInferenceRequest, inference_pb2.MultiInferenceResponse),
    "GetModelStatus": (
        get_model_status_pb2.GetModelStatusRequest,
        get_model_status_pb2.GetModelStatusResponse,
    ),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    root = tmp_path_factory.mktemp("compat")
    base = root / "models" / "half_plus_three"
    copy_version(export_generic(root / "export"), base, 123)
    config = root / "models.config"
    config.write_text(
        "model_config_list { config { name: 'half_plus_three' "
        f"base_path: '{base}' version_labels {{ key: 'stable' value: 123 }} }} }}"
    )
    settings = load_settings(data_dir=root, log_level="WARNING")
    options = ModelServerOptions.from_settings(
        settings.modelserver,
        host=settings.host,
        model_name=settings.trainer.model_name,
        port=0,
        rest_api_port=0,
        model_config_file=str(config),
    )
    server = ModelServer(
        options, settings.modelserver, models_dir=settings.trainer.models_dir, edge=settings.edge
    )
    with server as running:
        yield running


def same(expected: Any, actual: Any, *, subset: bool = False, where: str = "") -> None:
    """``actual`` equals ``expected`` (floats to 6 digits, NaN == NaN); ``subset``: keys ⊆."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        if not subset:
            assert sorted(actual) == sorted(expected), f"{where}: keys {sorted(actual)}"
        for key, value in expected.items():
            assert key in actual, f"{where}: missing {key!r} in {sorted(actual)}"
            same(value, actual[key], subset=subset, where=f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            same(e, a, subset=subset, where=f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert isinstance(actual, int | float), f"{where}: expected a number, got {actual!r}"
        assert (math.isnan(expected) and math.isnan(actual)) or math.isclose(
            expected, actual, rel_tol=1e-6, abs_tol=1e-9
        ), f"{where}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


@pytest.mark.parametrize("case", REST_CASES, ids=[c["name"] for c in REST_CASES])
def test_rest(server: ModelServer, case: dict[str, Any]) -> None:
    if "raw_body" in case:
        content = case["raw_body"].encode()
    else:
        content = json.dumps(case["body"]).encode() if "body" in case else None
    answer = httpx.request(
        case["method"],
        f"http://127.0.0.1:{server.rest_port}{case['path']}",
        content=content,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == case["status"], answer.text
    assert answer.headers["content-type"] == "application/json"
    body = json.loads(answer.text)  # the standard library reads NaN and Infinity
    if "response_raw" in case:
        same(json.loads(case["response_raw"]), body)
    elif "response" in case:
        same(case["response"], body, subset=case.get("match") == "subset")
    if "error_prefix" in case:
        assert list(body) == ["error"] and body["error"].startswith(case["error_prefix"])
    if "error_contains" in case:
        assert list(body) == ["error"] and case["error_contains"] in body["error"]


def _stub_method(server: ModelServer, rpc: str) -> Any:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    if rpc == "GetModelStatus":
        return channel, getattr(model_service_pb2_grpc.ModelServiceStub(channel), rpc)
    return channel, getattr(prediction_service_pb2_grpc.PredictionServiceStub(channel), rpc)


def _as_json(message: Any) -> Any:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


@pytest.mark.parametrize("case", GRPC_CASES, ids=[c["name"] for c in GRPC_CASES])
def test_grpc(server: ModelServer, case: dict[str, Any]) -> None:
    request_type, response_type = MESSAGES[case["rpc"]]
    request = text_format.Parse(case["request"], request_type())
    channel, method = _stub_method(server, case["rpc"])
    with channel:
        if "code" in case:
            with pytest.raises(grpc.RpcError) as raised:
                method(request, timeout=10)
            assert raised.value.code().name == case["code"]
            if "details" in case:
                assert raised.value.details() == case["details"]
            if "details_contains" in case:
                assert case["details_contains"] in raised.value.details()
            return
        answer = method(request, timeout=10)
    expected = text_format.Parse(case["response"], response_type())
    if case["rpc"] == "Predict":
        assert answer.model_spec == expected.model_spec
        assert sorted(answer.outputs) == sorted(expected.outputs)
        for name, tensor in expected.outputs.items():
            got, want = to_ndarray(answer.outputs[name]), to_ndarray(tensor)
            assert (got.dtype, got.shape) == (want.dtype, want.shape), name
            if got.dtype.kind in "fiu":
                np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
            else:
                assert got.tolist() == want.tolist(), name
        return
    if case["rpc"] == "GetModelMetadata":
        got_map, want_map = (get_model_metadata_pb2.SignatureDefMap() for _ in range(2))
        assert answer.metadata["signature_def"].Unpack(got_map)
        assert expected.metadata["signature_def"].Unpack(want_map)
        assert answer.model_spec == expected.model_spec
        same(_as_json(want_map), _as_json(got_map), subset=True)
        return
    same(_as_json(expected), _as_json(answer), subset=case.get("match") == "subset")
