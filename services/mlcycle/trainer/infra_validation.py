"""Infra-validation: the candidate must load and answer in the model server before it is blessed.

The staged SavedModel is served by a fresh ``mlcycle modelserver`` process
(the real command, with TF Serving's flags) from a throw-away base path whose
only version is a link to the staging folder. The trainer then asks it over
gRPC, through the official ``PredictionService`` stub, exactly as the
inference service will, and compares the answers with the probabilities it
computed in memory. A fresh process proves the SavedModel stands alone: no
class, variable or custom object of the training process is there to lean
on; the model server's own loading, warm-up and signature checks run as they
will in production.

The throw-away server answers only the trainer: it is started with one key of its
own (``predict`` scope, a fresh secret each time, in place of the configured ones),
which the trainer presents on every call.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import numpy as np

from mlcycle.common.errors import MlcycleError
from mlcycle.common.infra.process import EmbeddedServer, free_port

TOLERANCE = 1e-4
SIGNATURE = "serving_default"


class CandidateServer(EmbeddedServer):
    """``python -m mlcycle modelserver`` serving one model, on free gRPC and REST ports.

    The command and its flags are ``tensorflow_model_server``'s. ``start()``
    returns once the REST API answers at all; whether the version loads is
    asked next, through TF Serving's model status.
    """

    what = "model server"

    def __init__(
        self, name: str, base_path: Path, *, log_path: Path, start_timeout_s: float
    ) -> None:
        super().__init__(0, start_timeout_s=start_timeout_s)
        self.name = name
        self.base_path = base_path
        self.log_path = log_path
        self.rest_port = 0
        self.key = secrets.token_urlsafe(32)

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC API."""
        return f"{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API."""
        return f"http://{self.host}:{self.rest_port}"

    def _prepare(self) -> None:
        self.rest_port = free_port(self.host)

    def _argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlcycle",
            "modelserver",
            f"--host={self.host}",
            f"--port={self.port}",
            f"--rest_api_port={self.rest_port}",
            f"--model_name={self.name}",
            f"--model_base_path={self.base_path}",
        ]

    def _log_path(self) -> Path | None:
        return self.log_path

    def _env(self) -> Mapping[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "MLCYCLE_API_KEYS_FILE"}
        env["MLCYCLE_API_KEYS"] = f"infra-validation:predict:{self.key}"
        return env

    def _answers(self) -> bool:
        # Any answer of TF Serving's model status route, even "not found yet", means it is up.
        try:
            httpx.get(f"{self.rest_url}/v1/models/{self.name}", timeout=1.0)
        except httpx.HTTPError:
            return False
        return True


def infra_validate(
    path: Path,
    name: str,
    version: int,
    indices: np.ndarray,
    values: np.ndarray,
    expected: np.ndarray,
    timeout_s: float,
) -> tuple[bool, str]:
    """Serve ``path`` as ``name`` ``version`` in a model server; (passed, what was checked)."""
    inputs = {"indices": indices.astype(np.int64), "values": values.astype(np.float32)}
    return infra_validate_inputs(path, name, version, inputs, expected, timeout_s)


def infra_validate_inputs(
    path: Path,
    name: str,
    version: int,
    inputs: Mapping[str, np.ndarray],
    expected: np.ndarray,
    timeout_s: float,
) -> tuple[bool, str]:
    """:func:`infra_validate` for any signature: ``inputs`` by name, sent in their own dtypes."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".infra-", dir=path.parent) as tmp:
        base = Path(tmp) / name
        base.mkdir()
        (base / str(version)).symlink_to(path.resolve(), target_is_directory=True)
        server = CandidateServer(
            name, base, log_path=Path(tmp) / "modelserver.log", start_timeout_s=timeout_s
        )
        try:
            server.start()
            problem = _wait_available(
                server.rest_url, name, version, started + timeout_s, key=server.key
            )
            if problem:
                return False, problem
            loaded = time.perf_counter()
            answer = _predict(server.grpc_address, name, version, inputs, key=server.key)
        except MlcycleError as exc:
            return False, f"the model server could not serve the candidate: {exc.message}"
        finally:
            server.stop()
    return compare_answers(answer, expected, loaded - started)


def _wait_available(rest_url: str, name: str, version: int, deadline: float, *, key: str) -> str:
    """Empty once ``version`` is AVAILABLE; else why it is not (load error or timeout)."""
    url = f"{rest_url}/v1/models/{name}/versions/{version}"
    headers = {"Authorization": f"Bearer {key}"}
    while time.perf_counter() < deadline:
        try:
            answer = httpx.get(url, headers=headers, timeout=5.0)
            statuses = answer.json().get("model_version_status", [])
        except (httpx.HTTPError, ValueError):
            statuses = []
        for status in statuses:
            error = status.get("status") or {}
            if status.get("state") == "AVAILABLE":
                return ""
            if error.get("error_code", "OK") != "OK":
                return f"the model server failed to load it: {error.get('error_message')}"
        time.sleep(0.2)
    return "the model server did not make it AVAILABLE in time"


def _predict(
    address: str, name: str, version: int, inputs: Mapping[str, np.ndarray], *, key: str
) -> np.ndarray:
    """``probabilities`` for the sample, over gRPC Predict with the official stub."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from mlcycle.common.grpc import channel
    from mlcycle.common.grpc_auth import bearer_metadata

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.version.value = version
    request.model_spec.signature_name = SIGNATURE
    for input_name, array in inputs.items():
        request.inputs[input_name].CopyFrom(tf.make_tensor_proto(array))
    with channel(address) as chan:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(chan)
        try:
            response = stub.Predict(request, timeout=60.0, metadata=bearer_metadata(key))
        except grpc.RpcError as exc:
            raise _RpcFailed(f"Predict failed: {exc.code().name} {exc.details()}") from None
    return np.asarray(tf.make_ndarray(response.outputs["probabilities"]), np.float32)


class _RpcFailed(MlcycleError):
    """The model server refused or failed the validation request."""


def compare_answers(answer: np.ndarray, expected: np.ndarray, load_s: float) -> tuple[bool, str]:
    """(passed, why): the served ``answer`` against training's ``expected``, within TOLERANCE."""
    if answer.shape != expected.shape or not np.all(np.isfinite(answer)):
        return False, f"the model server answered shape {answer.shape}, expected {expected.shape}"
    worst = float(np.max(np.abs(answer - expected))) if answer.size else 0.0
    if worst > TOLERANCE:
        return False, f"the model server's answers differ from training's by up to {worst:.2e}"
    return True, (
        f"served by the model server in {load_s:.1f} s, answered {len(answer)} rows "
        f"over gRPC Predict (max difference {worst:.1e})"
    )
