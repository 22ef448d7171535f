"""The model server as the inference service sees it: TF Serving's gRPC API, nothing else.

Only the official ``tensorflow-serving-api`` stubs are used (``PredictionService.Predict``
and ``ModelService.GetModelStatus``), so the real ``tensorflow/serving`` can take
the model server's place. Every call has a deadline; ``Predict`` is retried a
bounded number of times with a short backoff when the server is unreachable or
slow. A server that is down fails fast (the channel reports the refused
connection at once) and the channel reconnects within a second once it is back.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import grpc
import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mlcycle.common.errors import Unavailable
from mlcycle.common.grpc import channel
from mlcycle.common.settings import Settings
from mlcycle.inference.metrics import MODEL_SERVER_ERRORS
from mlcycle.inference.tensors import from_tensor_proto, to_tensor_proto

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
OUTPUT = "probabilities"
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
BACKOFF_FIRST_S = 0.025
# gRPC's default reconnect backoff grows to two minutes; a restarted model server
# should be found again within a second.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


class VersionGone(Exception):
    """The pinned model version is no longer served (NOT_FOUND): refresh and retry."""


class ModelClient(Protocol):
    """What the predictor needs from a model server."""

    address: str

    def versions(self, name: str) -> list[int]:
        """The AVAILABLE versions of ``name``, ascending ([] when the model is unknown)."""
        ...

    def predict(
        self, name: str, version: int, indices: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """Class probabilities ``[batch, classes]`` of version ``version`` of ``name``."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class GrpcModelClient:
    """A :class:`ModelClient` over TF Serving's gRPC API."""

    def __init__(self, address: str, *, deadline_s: float, retries: int) -> None:
        self.address = address
        self.deadline_s = deadline_s
        self.retries = retries
        self._channel = channel(address, options=CHANNEL_OPTIONS)
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel).Predict
        self._status = model_service_pb2_grpc.ModelServiceStub(self._channel).GetModelStatus

    @classmethod
    def from_settings(cls, settings: Settings) -> GrpcModelClient:
        """A client of ``settings.model_server_address`` with its deadline and retries."""
        return cls(
            settings.model_server_address,
            deadline_s=settings.predict_deadline_s,
            retries=settings.predict_retries,
        )

    def versions(self, name: str) -> list[int]:
        """The AVAILABLE versions of ``name`` (GetModelStatus), ascending."""
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(name=name)
        )
        try:
            response = self._status(request, timeout=self.deadline_s)
        except grpc.RpcError as exc:
            MODEL_SERVER_ERRORS.labels(exc.code().name).inc()
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise self._unavailable(exc) from None
        return sorted(
            status.version for status in response.model_version_status if status.state == _AVAILABLE
        )

    def predict(
        self, name: str, version: int, indices: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """``Predict`` on version ``version``; VersionGone on NOT_FOUND, else Unavailable."""
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(
                name=name,
                signature_name=SIGNATURE,
                version=wrappers_pb2.Int64Value(value=version),
            ),
            inputs={"indices": to_tensor_proto(indices), "values": to_tensor_proto(values)},
            output_filter=[OUTPUT],
        )
        response = self._call_with_retries(request, name, version)
        if OUTPUT not in response.outputs:
            raise Unavailable(
                f"model {name} version {version} has no {OUTPUT!r} output",
                details={"outputs": sorted(response.outputs)},
            )
        probabilities = from_tensor_proto(response.outputs[OUTPUT])
        if probabilities.ndim != 2 or probabilities.shape[0] != indices.shape[0]:
            raise Unavailable(
                f"model {name} version {version} answered {OUTPUT} of shape "
                f"{list(probabilities.shape)} for {indices.shape[0]} rows"
            )
        return probabilities.astype(np.float32, copy=False)

    def _call_with_retries(
        self, request: predict_pb2.PredictRequest, name: str, version: int
    ) -> predict_pb2.PredictResponse:
        attempt = 0
        while True:
            try:
                return self._predict(request, timeout=self.deadline_s)
            except grpc.RpcError as exc:
                code = exc.code()
                MODEL_SERVER_ERRORS.labels(code.name).inc()
                if code == grpc.StatusCode.NOT_FOUND:
                    raise VersionGone(f"{name} version {version}: {exc.details()}") from None
                if code not in RETRYABLE or attempt >= self.retries:
                    raise self._unavailable(exc) from None
            time.sleep(BACKOFF_FIRST_S * 2**attempt)
            attempt += 1

    def _unavailable(self, exc: grpc.RpcError) -> Unavailable:
        code, details = exc.code(), exc.details()
        if code in RETRYABLE:
            message = f"the model server at {self.address} is unavailable ({code.name}: {details})"
        else:
            message = (
                f"the model server at {self.address} refused the call ({code.name}: {details})"
            )
        log.warning(message)
        return Unavailable(message, details={"model_server": self.address, "code": code.name})

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()
