"""The model server over real loopback gRPC and HTTP, with TF Serving's official stubs.

Models are real SavedModels built here (see modelserver_models); versions appear,
break and vanish on a real file system while clients keep calling.
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from mlcycle.common.errors import Unavailable
from mlcycle.common.infra.process import free_port
from mlcycle.common.settings import Settings, load_settings
from mlcycle.modelserver import ModelServer, ModelServerOptions, ModelServerProcess
from mlcycle.modelserver.tensors import to_ndarray, to_tensor_proto
from tests.integration.modelserver_models import (
    copy_version,
    export_generic,
    export_mlcycle_model,
    export_sparse_scorer,
    sparse_request,
    write_broken_version,
    write_warmup_requests,
)

pytestmark = pytest.mark.integration

INDICES = np.array([[1, 5, 9, 0], [3, 4, 0, 0]], dtype=np.int64)
VALUES = np.array([[0.5, 1.0, 0.25, 0.0], [1.0, 0.5, 0.0, 0.0]], dtype=np.float32)


@dataclass(frozen=True)
class Exports:
    scorer_a: Path
    scorer_b: Path
    generic: Path
    mlcycle: Path


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    root = tmp_path_factory.mktemp("exports")
    return Exports(
        scorer_a=export_sparse_scorer(root / "a", bias=0.0),
        scorer_b=export_sparse_scorer(root / "b", bias=6.0),  # scores near 1: easy to tell
        generic=export_generic(root / "generic"),
        mlcycle=export_mlcycle_model(root / "mlcycle"),
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, log_level="WARNING")


class Client:
    """The official stubs and a REST client pointed at one running server."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.rest = httpx.Client(base_url=f"http://127.0.0.1:{server.rest_port}", timeout=10)

    def states(self, name: str) -> dict[int, str]:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        try:
            response = self.models.GetModelStatus(request, timeout=5)
        except grpc.RpcError:
            return {}
        names = get_model_status_pb2.ModelVersionStatus.State
        return {s.version: names.Name(s.state) for s in response.model_version_status}

    def status_of(self, name: str, version: int) -> Any:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        request.model_spec.version.value = version
        return self.models.GetModelStatus(request, timeout=5).model_version_status[0]

    def close(self) -> None:
        self.channel.close()
        self.rest.close()


def model_server(settings: Settings, **options: Any) -> ModelServer:
    """A model server as ``mlcycle modelserver`` builds it from ``settings``, ``options`` over."""
    named = {"host": settings.host, "model_name": settings.trainer.model_name, **options}
    defaults = ModelServerOptions.from_settings(settings.modelserver, **named)
    return ModelServer(
        defaults, settings.modelserver, models_dir=settings.trainer.models_dir, edge=settings.edge
    )


@contextmanager
def serving(settings: Settings, **options: Any) -> Iterator[Client]:
    options = {"port": 0, "rest_api_port": 0, "file_system_poll_wait_seconds": 0.2, **options}
    server = model_server(settings, **options).start()
    client = Client(server)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def write_config(path: Path, *models: str) -> Path:
    path.write_text("model_config_list {\n" + "\n".join(models) + "\n}\n")
    return path


def reference_outputs(path: Path, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """What TensorFlow itself answers, loading the SavedModel directly."""
    function = tf.saved_model.load(str(path)).signatures["serving_default"]
    return {name: value.numpy() for name, value in function(**inputs).items()}


def grpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


# -- one model: Predict, metadata, status, health ---------------------------------------------


def test_serves_the_trainers_own_model_like_tensorflow_answers(
    exports: Exports, settings: Settings, tmp_path: Path
) -> None:
    copy_version(exports.mlcycle, tmp_path / "toxicity", 1)
    with serving(settings, model_name="toxicity", model_base_path=str(tmp_path / "toxicity")) as c:
        response = c.predictions.Predict(sparse_request("toxicity", INDICES, VALUES), timeout=10)
        expected = reference_outputs(exports.mlcycle, indices=INDICES, values=VALUES)
        assert set(response.outputs) == {"probabilities", "scores", "classes"}
        for name, value in expected.items():
            np.testing.assert_allclose(to_ndarray(response.outputs[name]), value, rtol=1e-6)
        spec = response.model_spec
        assert (spec.name, spec.version.value, spec.signature_name) == (
            "toxicity",
            1,
            "serving_default",
        )
        pinned = sparse_request("toxicity", INDICES, VALUES, version=1)
        pinned.output_filter.append("scores")
        filtered = c.predictions.Predict(pinned, timeout=10)
        assert list(filtered.outputs) == ["scores"]
        body = {"instances": [{"indices": INDICES[0].tolist(), "values": VALUES[0].tolist()}]}
        rest = c.rest.post("/v1/models/toxicity/versions/1:predict", json=body).json()
        assert rest["predictions"][0]["scores"] == pytest.approx(float(expected["scores"][0]))
        # Feature ids beyond the model's input dimension (a mismatched transform): the
        # model refuses them, and that is the caller's input, not a server fault.
        beyond = sparse_request("toxicity", INDICES + 5000, VALUES)
        error = grpc_error(lambda: c.predictions.Predict(beyond, timeout=10))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("the model rejected the inputs")
        body["instances"][0]["indices"] = [5001, 5002, 5003, 5004]
        assert c.rest.post("/v1/models/toxicity:predict", json=body).status_code == 400


def test_an_oversized_rest_body_is_413_in_tf_servings_shape_before_routing(
    exports: Exports, settings: Settings, tmp_path: Path
) -> None:
    copy_version(exports.scorer_a, tmp_path / "scorer", 3)
    limited = settings.replace(max_body_bytes=4096)
    with serving(limited, model_name="scorer", model_base_path=str(tmp_path / "scorer")) as c:
        requests = _rest_requests()
        body = b'{"instances": [' + b"0," * 4096 + b"0]}"
        declared = c.rest.post("/v1/models/scorer:predict", content=body)
        assert declared.status_code == 413, declared.text
        assert declared.json() == {"error": "request body is larger than 4096 bytes"}
        chunked = c.rest.post("/v1/models/scorer:predict", content=iter([body[:3000], body[3000:]]))
        assert chunked.status_code == 413, chunked.text
        # Refused before the handler: the model server's own request count did not move.
        assert _rest_requests() == requests
        within = c.rest.post("/v1/models/scorer:predict", json={"instances": [{"x": 1}]})
        assert within.status_code == 400  # reaches the handler, which names the bad input
        assert _rest_requests() == requests + 1


def _rest_requests() -> float:
    """Every REST request the model server's handler answered, whatever its outcome."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "mlcycle_modelserver_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("api") == "rest"
    )


def test_metadata_status_health_and_readiness(
    exports: Exports, settings: Settings, tmp_path: Path
) -> None:
    copy_version(exports.scorer_a, tmp_path / "scorer", 3)
    with serving(settings, model_name="scorer", model_base_path=str(tmp_path / "scorer")) as c:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = "scorer"
        request.metadata_field.append("signature_def")
        response = c.predictions.GetModelMetadata(request, timeout=5)
        assert (response.model_spec.name, response.model_spec.version.value) == ("scorer", 3)
        definitions = get_model_metadata_pb2.SignatureDefMap()
        assert response.metadata["signature_def"].Unpack(definitions)
        default = definitions.signature_def["serving_default"]
        assert default.method_name == "tensorflow/serving/predict"
        assert default.inputs["indices"].dtype == tf.int64.as_datatype_enum
        assert [d.size for d in default.inputs["values"].tensor_shape.dim] == [-1, -1]
        assert sorted(default.outputs) == ["classes", "probabilities", "scores"]

        del request.metadata_field[:]
        error = grpc_error(lambda: c.predictions.GetModelMetadata(request, timeout=5))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at least one metadata_field" in error.details()

        status = c.status_of("scorer", 3)
        assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        assert (status.status.error_code, status.status.error_message) == (0, "")
        health = health_pb2_grpc.HealthStub(c.channel)
        for service in ("", "tensorflow.serving.PredictionService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert c.rest.get("/readyz").json()["checks"] == {"scorer": True}
        assert c.rest.get("/healthz").status_code == 200


def test_a_model_without_versions_is_not_ready(settings: Settings, tmp_path: Path) -> None:
    with serving(settings, model_name="later", model_base_path=str(tmp_path / "later")) as c:
        assert c.rest.get("/readyz").status_code == 503
        health = health_pb2_grpc.HealthStub(c.channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        error = grpc_error(lambda: c.predictions.Predict(sparse_request("later", INDICES, VALUES)))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details() == "Servable not found for request: Latest(later)"
        status = c.rest.get("/v1/models/later")
        assert status.status_code == 404
        assert status.json() == {"error": "Could not find any versions of model later"}


# -- errors ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(exports: Exports, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """generic (labels stable → 1) and scorer, served for the error tests."""
    root = tmp_path_factory.mktemp("shared")
    copy_version(exports.generic, root / "generic", 1)
    copy_version(exports.scorer_a, root / "scorer", 1)
    config = write_config(
        root / "models.config",
        f'config {{ name: "generic" base_path: "{root / "generic"}" '
        'version_labels { key: "stable" value: 1 } }',
        f'config {{ name: "scorer" base_path: "{root / "scorer"}" }}',
    )
    settings = load_settings(data_dir=root, log_level="WARNING")
    with serving(settings, model_config_file=str(config)) as client:
        yield client


def predict_request(name: str, signature: str = "", **inputs: Any) -> Any:
    request = sparse_request(name, np.zeros((1, 1)), np.zeros((1, 1)))
    request.inputs.clear()
    request.model_spec.signature_name = signature
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(to_tensor_proto(value))
    return request


FLOATS = np.array([1.0, 2.0], np.float32)
BAD_REQUESTS = [
    (
        predict_request("scorer", indices=INDICES),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 1!=2 len({indices}) != len({indices,values}). "
        "Sent extra: {}. Missing but required: {values}.",
    ),
    (
        predict_request("scorer", indices=INDICES, values=VALUES, extra=VALUES),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Sent extra: {extra}. Missing but required: {}.",
    ),
    (
        predict_request("scorer", indices=INDICES, vals=VALUES),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor alias not found in signature: vals. "
        "Inputs expected to be in the set {indices,values}.",
    ),
    (
        predict_request("scorer", indices=INDICES.astype(np.int32), values=VALUES),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input indices has dtype DT_INT32 but signature 'serving_default' expects DT_INT64",
    ),
    (
        predict_request("scorer", indices=INDICES[0], values=VALUES),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input indices has shape [4] (rank 1) but signature 'serving_default' expects shape "
        "[-1,-1] (rank 2)",
    ),
    (
        predict_request(
            "generic",
            "multi",
            x=FLOATS,
            k=np.ones((2, 2), np.int64),
            s=np.array([b"a", b"b"], dtype=object),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input k has shape [2, 2] but signature 'multi' expects [-1,3]: dimension 1 must be 3",
    ),
    (
        predict_request("generic", "nope", x=FLOATS),
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    ),
    (
        predict_request("half", x=FLOATS),
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(half)",
    ),
]


@pytest.mark.parametrize(("request_", "code", "message"), BAD_REQUESTS)
def test_bad_predict_requests_get_tf_servings_codes_and_messages(
    shared: Client, request_: Any, code: grpc.StatusCode, message: str
) -> None:
    error = grpc_error(lambda: shared.predictions.Predict(request_, timeout=5))
    assert error.code() == code
    assert message in error.details()


def test_versions_labels_output_filters_and_unimplemented_calls(shared: Client) -> None:
    request = predict_request("generic", x=FLOATS)
    request.model_spec.version.value = 7
    error = grpc_error(lambda: shared.predictions.Predict(request, timeout=5))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(generic, 7)",
    )
    request.model_spec.version_label = "nope"
    error = grpc_error(lambda: shared.predictions.Predict(request, timeout=5))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: nope",
    )
    request.model_spec.version_label = "stable"
    answer = shared.predictions.Predict(request, timeout=5)
    assert answer.model_spec.version.value == 1
    assert to_ndarray(answer.outputs["y"]).tolist() == [3.5, 4.0]

    filtered = predict_request(
        "generic", "multi", x=FLOATS, k=np.ones((2, 3), np.int64), s=np.array([b"a", b"b"], object)
    )
    filtered.output_filter.extend(["upper", "ksum"])
    answer = shared.predictions.Predict(filtered, timeout=5)
    assert sorted(answer.outputs) == ["ksum", "upper"]
    assert to_ndarray(answer.outputs["upper"]).tolist() == [b"A", b"B"]
    filtered.output_filter.append("nope")
    error = grpc_error(lambda: shared.predictions.Predict(filtered, timeout=5))
    assert "output tensor alias not found in signature: nope" in error.details()

    no_spec = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    error = grpc_error(lambda: shared.predictions.GetModelMetadata(no_spec, timeout=5))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )
    multi = inference_pb2.MultiInferenceRequest()
    error = grpc_error(lambda: shared.predictions.MultiInference(multi, timeout=5))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def examples(*xs: float) -> Any:
    request = classification_pb2.ClassificationRequest()
    listed = request.input.example_list_with_context
    listed.context.features.feature["unused"].int64_list.value.append(1)
    for x in xs:
        listed.examples.add().features.feature["x"].float_list.value.append(x)
    return request


def test_classify_and_regress_with_tf_examples(shared: Client) -> None:
    request = examples(2.0, 5.0)
    request.model_spec.name = "generic"
    request.model_spec.signature_name = "tensorflow/serving/classify"
    response = shared.predictions.Classify(request, timeout=5)
    assert response.model_spec.version.value == 1
    rows = [
        [(c.label, round(c.score, 5)) for c in r.classes] for r in response.result.classifications
    ]
    assert rows == [
        [("negative", 0.8), ("positive", 0.2)],
        [("negative", 0.5), ("positive", 0.5)],
    ]
    regression = regression_pb2.RegressionRequest()
    regression.model_spec.name = "generic"
    regression.model_spec.signature_name = "tensorflow/serving/regress"
    regression.input.CopyFrom(examples(1.0, 2.0).input)
    values = [r.value for r in shared.predictions.Regress(regression, timeout=5).result.regressions]
    assert values == [3.5, 4.0]

    request.model_spec.signature_name = ""  # serving_default is a predict signature
    error = grpc_error(lambda: shared.predictions.Classify(request, timeout=5))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict"
    )
    regression.model_spec.signature_name = "tensorflow/serving/classify"
    error = grpc_error(lambda: shared.predictions.Regress(regression, timeout=5))
    assert "Expected regression signature method_name" in error.details()
    empty = classification_pb2.ClassificationRequest()
    empty.model_spec.name, empty.model_spec.signature_name = (
        "generic",
        "tensorflow/serving/classify",
    )
    error = grpc_error(lambda: shared.predictions.Classify(empty, timeout=5))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")


def test_requests_are_counted_per_model_version_and_status(shared: Client) -> None:
    labels = {"model": "scorer", "version": "1", "api": "grpc", "method": "predict"}
    before = REGISTRY.get_sample_value(
        "mlcycle_modelserver_requests_total", {**labels, "status": "OK"}
    )
    shared.predictions.Predict(sparse_request("scorer", INDICES, VALUES), timeout=5)
    after = REGISTRY.get_sample_value(
        "mlcycle_modelserver_requests_total", {**labels, "status": "OK"}
    )
    assert after == (before or 0) + 1
    page = shared.rest.get("/monitoring/prometheus/metrics").text
    assert 'mlcycle_modelserver_versions{model="generic",state="AVAILABLE"} 1.0' in page
    assert "mlcycle_modelserver_request_seconds_bucket" in shared.rest.get("/metrics").text


# -- versions come and go ----------------------------------------------------------------------


class Caller:
    """Calls Predict (latest version) in a loop, noting each answer's version or error."""

    def __init__(self, client: Client, name: str) -> None:
        self.client, self.name = client, name
        self.versions: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Caller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        request = sparse_request(self.name, INDICES, VALUES)
        while not self._stop.is_set():
            try:
                answer = self.client.predictions.Predict(request, timeout=5)
                self.versions.append(answer.model_spec.version.value)
            except grpc.RpcError as exc:
                self.errors.append(f"{exc.code().name}: {exc.details()}")


def test_a_new_version_serves_once_loaded_and_the_old_one_goes_after(
    exports: Exports, settings: Settings, tmp_path: Path
) -> None:
    base = tmp_path / "scorer"
    copy_version(exports.scorer_a, base, 1)
    with serving(settings, model_name="scorer", model_base_path=str(base)) as c:
        assert c.states("scorer") == {1: "AVAILABLE"}
        with Caller(c, "scorer") as caller:
            wait_for(lambda: len(caller.versions) > 20, "answers from version 1")
            copy_version(exports.scorer_b, base, 2)
            wait_for(lambda: c.states("scorer") == {2: "AVAILABLE", 1: "END"}, "version 2")
            wait_for(lambda: caller.versions[-1] == 2, "answers from version 2")
        assert caller.errors == []  # never a moment without a served version
        first_two = caller.versions.index(2)
        assert set(caller.versions[:first_two]) == {1} and set(caller.versions[first_two:]) == {2}
        scores = to_ndarray(
            c.predictions.Predict(sparse_request("scorer", INDICES, VALUES), timeout=5).outputs[
                "scores"
            ]
        )
        assert scores.min() > 0.9  # version 2's bias
        status = c.rest.get("/v1/models/scorer").json()
        assert status == {
            "model_version_status": [
                {
                    "version": "2",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                },
                {
                    "version": "1",
                    "state": "END",
                    "status": {"error_code": "OK", "error_message": ""},
                },
            ]
        }


def test_a_broken_version_is_reported_and_does_not_take_serving_down(
    exports: Exports, settings: Settings, tmp_path: Path
) -> None:
    base = tmp_path / "scorer"
    copy_version(exports.scorer_a, base, 1)
    with serving(settings, model_name="scorer", model_base_path=str(base)) as c:
        write_broken_version(base, 2)
        wait_for(lambda: c.states("scorer").get(2) == "END", "version 2 to fail")
        failed = c.status_of("scorer", 2)
        assert failed.status.error_code != 0
        assert "cannot read the SavedModel" in failed.status.error_message
        assert c.states("scorer")[1] == "AVAILABLE"
        answer = c.predictions.Predict(sparse_request("scorer", INDICES, VALUES), timeout=5)
        assert answer.model_spec.version.value == 1
        # Fixed in place (a new SavedModel in the same folder): loaded on the next poll.
        shutil.rmtree(base / "2")
        copy_version(exports.scorer_b, base, 2)
        wait_for(lambda: c.states("scorer") == {2: "AVAILABLE", 1: "END"}, "the fixed version 2")


def test_specific_and_all_policies_labels_and_vanished_versions(
    exports: Exports, settings: Settings, tmp_path: Path
) -> None:
    base = tmp_path / "shared-base"
    for version in (1, 2, 3):
        copy_version(exports.scorer_a if version < 3 else exports.scorer_b, base, version)
    config = write_config(
        tmp_path / "models.config",
        f'config {{ name: "every" base_path: "{base}" model_version_policy {{ all {{}} }} }}',
        f'config {{ name: "pinned" base_path: "{base}" '
        "model_version_policy { specific { versions: 1 versions: 3 } } "
        'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 3 } }',
    )
    with serving(settings, model_config_file=str(config)) as c:
        assert c.states("every") == {3: "AVAILABLE", 2: "AVAILABLE", 1: "AVAILABLE"}
        assert c.states("pinned") == {3: "AVAILABLE", 1: "AVAILABLE"}
        canary = sparse_request("pinned", INDICES, VALUES, version_label="canary")
        assert c.predictions.Predict(canary, timeout=5).model_spec.version.value == 3
        stable = c.rest.get("/v1/models/pinned/labels/stable").json()["model_version_status"]
        assert [s["version"] for s in stable] == ["1"]
        assert c.rest.get("/v1/models/pinned/versions/2").status_code == 404

        shutil.rmtree(base / "1")  # vanished: unloaded, since other versions serve
        wait_for(lambda: c.states("every").get(1) == "END", "version 1 of every to unload")
        wait_for(lambda: c.states("pinned").get(1) == "END", "version 1 of pinned to unload")
        assert c.states("every") == {3: "AVAILABLE", 2: "AVAILABLE", 1: "END"}
        error = grpc_error(
            lambda: c.predictions.Predict(
                sparse_request("pinned", INDICES, VALUES, version_label="stable"), timeout=5
            )
        )
        assert error.details() == "Servable not found for request: Specific(pinned, 1)"


def test_reload_config_by_request_and_by_polling_the_file(
    exports: Exports, settings: Settings, tmp_path: Path
) -> None:
    copy_version(exports.scorer_a, tmp_path / "a", 1)
    copy_version(exports.scorer_b, tmp_path / "a", 2)
    # A request may point at the models directory (and at the base paths the server
    # started with) only: see test_modelserver_keys for the paths it refuses.
    generic = settings.trainer.models_dir / "g"
    copy_version(exports.generic, generic, 1)
    config = write_config(
        tmp_path / "models.config", f'config {{ name: "a" base_path: "{tmp_path / "a"}" }}'
    )
    with serving(
        settings, model_config_file=str(config), model_config_file_poll_wait_seconds=0.2
    ) as c:
        assert c.states("a") == {2: "AVAILABLE"}
        request = model_management_pb2.ReloadConfigRequest()
        listed = request.config.model_config_list.config
        listed.add(
            name="a", base_path=str(tmp_path / "a")
        ).model_version_policy.specific.versions.append(1)
        listed.add(name="g", base_path=str(generic))
        response = c.models.HandleReloadConfigRequest(request, timeout=30)
        assert response.status.error_code == 0
        # Applied before the call returns: version 1 pinned, the new model loaded.
        assert c.states("a") == {2: "END", 1: "AVAILABLE"}
        assert c.states("g") == {1: "AVAILABLE"}

        bad = model_management_pb2.ReloadConfigRequest()
        bad.config.model_config_list.config.add(name="a")
        error = grpc_error(lambda: c.models.HandleReloadConfigRequest(bad, timeout=5))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "has no base_path" in error.details()

        # The file changes: the poll applies it (model g goes, a follows the latest again).
        write_config(config, f'config {{ name: "a" base_path: "{tmp_path / "a"}" }} ')
        wait_for(lambda: c.states("a").get(2) == "AVAILABLE", "the file's config")
        wait_for(lambda: c.states("g") == {1: "END"}, "model g to unload")
        assert c.rest.get("/readyz").json()["checks"] == {"a": True}

        # An empty request re-reads the file.
        empty = model_management_pb2.ReloadConfigRequest()
        assert c.models.HandleReloadConfigRequest(empty, timeout=30).status.error_code == 0


def test_batching_merges_concurrent_requests_of_different_widths(
    exports: Exports, settings: Settings, tmp_path: Path
) -> None:
    copy_version(exports.scorer_a, tmp_path / "scorer", 1)
    params = tmp_path / "batching.config"
    params.write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 50000 }\n"
        "num_batch_threads { value: 1 }\npad_variable_length_inputs: true\n"
    )
    requests = []
    rng = np.random.default_rng(5)
    for width in range(1, 13):
        indices = rng.integers(1, 900, size=(2, width))
        values = rng.random((2, width)).astype(np.float32)
        requests.append((indices, values))
    labels = {"model": "scorer", "version": "1"}
    merged_before = REGISTRY.get_sample_value("mlcycle_modelserver_batch_requests_sum", labels) or 0
    calls_before = (
        REGISTRY.get_sample_value("mlcycle_modelserver_batch_requests_count", labels) or 0
    )
    with serving(
        settings,
        model_name="scorer",
        model_base_path=str(tmp_path / "scorer"),
        enable_batching=True,
        batching_parameters_file=str(params),
    ) as c:
        threads = []
        answers: dict[int, Any] = {}
        for i, (indices, values) in enumerate(requests):

            def call(
                i: int = i, indices: np.ndarray = indices, values: np.ndarray = values
            ) -> None:
                answers[i] = c.predictions.Predict(
                    sparse_request("scorer", indices, values), timeout=10
                )

            threads.append(threading.Thread(target=call))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for i, (indices, values) in enumerate(requests):
        expected = reference_outputs(exports.scorer_a, indices=indices, values=values)
        np.testing.assert_allclose(
            to_ndarray(answers[i].outputs["scores"]), expected["scores"], rtol=1e-5
        )
    merged = (
        REGISTRY.get_sample_value("mlcycle_modelserver_batch_requests_sum", labels) - merged_before
    )
    calls = (
        REGISTRY.get_sample_value("mlcycle_modelserver_batch_requests_count", labels) - calls_before
    )
    assert merged == 12 and calls < 12  # padded to the longest, they shared model calls


def test_warmup_requests_run_before_a_version_serves(
    exports: Exports, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "scorer"
    good = copy_version(exports.scorer_a, base, 1)
    write_warmup_requests(good, [sparse_request("scorer", INDICES, VALUES)] * 3)
    with caplog.at_level(logging.INFO, logger="mlcycle.modelserver"):
        with serving(settings, model_name="scorer", model_base_path=str(base)) as c:
            assert c.states("scorer") == {1: "AVAILABLE"}
            assert any(
                "warmed up scorer version 1 with 3 requests" in r.getMessage()
                for r in caplog.records
            )
            # A version whose own warm-up requests fail is not served.
            wrong = sparse_request("scorer", INDICES, VALUES)
            wrong.inputs["typo"].CopyFrom(wrong.inputs["values"])
            del wrong.inputs["values"]
            staged = tmp_path / "staged"
            shutil.copytree(exports.scorer_b, staged)
            write_warmup_requests(staged, [wrong])
            copy_version(staged, base, 2)
            wait_for(lambda: c.states("scorer").get(2) == "END", "version 2 to fail its warm-up")
            failed = c.status_of("scorer", 2).status.error_message
            assert "warm-up record 0 failed" in failed
            assert "input tensor alias not found in signature: typo" in failed
            assert c.states("scorer")[1] == "AVAILABLE"


def test_the_command_takes_a_tf_serving_docker_command_line(
    exports: Exports, tmp_path: Path
) -> None:
    copy_version(exports.scorer_a, tmp_path / "models" / "x", 1)
    log = tmp_path / "modelserver.log"
    args = [
        "--model_name=x",
        f"--model_base_path={tmp_path / 'models' / 'x'}",
        "--file_system_poll_wait_seconds=1",
        "--tensorflow_session_parallelism=0",
        "--tensorflow_intra_op_parallelism=1",
        "--tensorflow_inter_op_parallelism=1",
        "--grpc_max_threads=2",
    ]
    with ModelServerProcess(args, log_path=log, start_timeout_s=90) as process:
        status = httpx.get(f"{process.rest_url}/v1/models/x", timeout=5).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        with grpc.insecure_channel(process.grpc_address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            answer = stub.Predict(sparse_request("x", INDICES, VALUES), timeout=10)
        assert answer.model_spec.version.value == 1
    text = log.read_text()
    assert "--tensorflow_session_parallelism is not implemented" in text
    assert "TensorFlow intra_op parallelism: 1 threads" in text  # applied before the load
    assert "TensorFlow inter_op parallelism: 1 threads" in text
    assert "cannot apply" not in text
    assert "heap frozen after a change of served versions" in text
    assert "model server stopped" in text  # SIGTERM stopped it cleanly


def test_rest_calls_time_out_and_a_taken_port_fails_cleanly(
    exports: Exports, settings: Settings, tmp_path: Path
) -> None:
    base = tmp_path / "scorer"
    copy_version(exports.scorer_a, base, 1)
    params = tmp_path / "slow.config"  # a lone request waits 1.5 s for a batch to fill
    params.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 1500000 }\n")
    with serving(
        settings,
        model_name="scorer",
        model_base_path=str(base),
        enable_batching=True,
        batching_parameters_file=str(params),
        rest_api_timeout_in_ms=200,
    ) as c:
        started = time.monotonic()
        body = {"instances": [{"indices": [1, 2], "values": [1.0, 0.5]}]}
        answer = c.rest.post("/v1/models/scorer:predict", json=body)
        assert answer.status_code == 504
        assert answer.json() == {"error": "the request did not complete within 200 ms"}
        assert time.monotonic() - started < 1.2

        grpc_port = free_port()
        server = model_server(
            settings,
            port=grpc_port,
            rest_api_port=c.server.rest_port,  # taken
            model_name="scorer",
            model_base_path=str(base),
        )
        with pytest.raises(
            Unavailable, match=r"cannot listen on .* \(REST API\): the address is in use"
        ):
            server.start()
        with socket.socket() as probe:  # the gRPC port it had bound is free again
            probe.bind(("127.0.0.1", grpc_port))
