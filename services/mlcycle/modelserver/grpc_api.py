"""TF Serving's gRPC API: ``tensorflow.serving.PredictionService`` and ``ModelService``.

The servicers are the official ones from tensorflow-serving-api, registered on
the shared server builder (health, reflection, the error interceptor that maps
:class:`~mlcycle.common.errors.MlcycleError` to gRPC statuses). Codes and
messages follow TF Serving: an unknown model or version is NOT_FOUND
("Servable not found for request: Latest(name)"), bad inputs are
INVALID_ARGUMENT naming the input, an unknown Predict signature is
FAILED_PRECONDITION, MultiInference is UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
    status_pb2,
)

from mlcycle.common.errors import InvalidInput, MlcycleError
from mlcycle.common.grpc import GrpcServer, build_server
from mlcycle.modelserver import metrics, prediction
from mlcycle.modelserver.config import model_settings
from mlcycle.modelserver.errors import Unimplemented
from mlcycle.modelserver.manager import ModelManager, VersionStatus
from mlcycle.modelserver.servable import Servable
from mlcycle.modelserver.watcher import ConfigFile

log = logging.getLogger(__name__)

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
_ERROR_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type
_STATES = get_model_status_pb2.ModelVersionStatus.State
R = TypeVar("R")


def resolve(manager: ModelManager, spec: Any) -> Servable:
    """The version a ModelSpec names: its version, its label, or the latest."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return manager.resolve(spec.name, version=spec.version.value)
    if choice == "version_label":
        return manager.resolve(spec.name, label=spec.version_label)
    return manager.resolve(spec.name)


class _Observed:
    """Counts and times each call per model, version, method and status code."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def call(self, method: str, request: Message, answer: Callable[[Servable], R]) -> R:
        started = time.perf_counter()
        spec = getattr(request, "model_spec", None)
        name = spec.name if spec is not None else ""
        model = name if self.manager.is_configured(name) else metrics.UNKNOWN_MODEL
        version, code = "", "OK"
        try:
            if spec is None or not request.HasField("model_spec"):
                raise InvalidInput("Missing ModelSpec")
            servable = resolve(self.manager, spec)
            version = str(servable.version)
            return answer(servable)
        except MlcycleError as exc:
            code = exc.grpc_code.name
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            metrics.observe_request(
                model, version, "grpc", method, code, time.perf_counter() - started
            )


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, Classify, Regress and GetModelMetadata over the manager's versions."""

    def __init__(self, manager: ModelManager, run: prediction.Runner = prediction.direct) -> None:
        self._observed = _Observed(manager)
        self._run = run

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Run a signature (``serving_default`` by default) on the request's input tensors."""
        return self._observed.call(
            "predict", request, lambda s: prediction.predict(s, request, self._run)
        )

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Classify tf.Examples with a classification signature."""
        return self._observed.call(
            "classify", request, lambda s: prediction.classify(s, request, self._run)
        )

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Regress tf.Examples with a regression signature."""
        return self._observed.call(
            "regress", request, lambda s: prediction.regress(s, request, self._run)
        )

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The version's signature definitions."""
        return self._observed.call(
            "get_model_metadata", request, lambda s: prediction.metadata(s, request)
        )

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Not implemented: answer UNIMPLEMENTED."""
        raise Unimplemented("MultiInference is not implemented by this model server")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, manager: ModelManager, config_file: ConfigFile | None = None) -> None:
        self.manager = manager
        self.config_file = config_file

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The state of every known version of a model, or of the one asked for."""
        if not request.HasField("model_spec"):
            raise InvalidInput("Missing ModelSpec")
        spec = request.model_spec
        choice = spec.WhichOneof("version_choice")
        statuses = self.manager.status(
            spec.name,
            version=spec.version.value if choice == "version" else None,
            label=spec.version_label if choice == "version_label" else "",
        )
        return status_response(statuses)

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Serve the config in the request (or, when it is empty, re-read the config file).

        Returns once the models of the new config are loaded, as TF Serving does.
        """
        if request.config.WhichOneof("config") is not None:
            models = model_settings(request.config, "ReloadConfigRequest.config")
        elif self.config_file is not None:
            config = self.config_file.read()
            models = model_settings(config, str(self.config_file.path))
        else:
            raise InvalidInput(
                "ReloadConfigRequest.config has no model_config_list, and the server was not "
                "started with --model_config_file to re-read"
            )
        log.info("reloading the model config", extra={"models": [m.name for m in models]})
        self.manager.reconfigure(models)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = _ERROR_CODES.values_by_name["OK"].number
        return response


def status_response(statuses: list[VersionStatus]) -> Any:
    """A GetModelStatusResponse listing ``statuses``."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = _STATES.Value(status.state)
        code = _ERROR_CODES.values_by_name.get(status.error_code)
        entry.status.error_code = code.number if code is not None else 2  # UNKNOWN
        entry.status.error_message = status.error_message
    return response


def build_grpc_server(
    manager: ModelManager,
    *,
    host: str,
    port: int,
    run: prediction.Runner = prediction.direct,
    config_file: ConfigFile | None = None,
    max_workers: int = 16,
) -> GrpcServer:
    """The model server's gRPC server, bound (``port=0``: a free port) but not started."""
    return build_server(
        host=host,
        port=port,
        servicers=[
            (
                prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server,
                PredictionServicer(manager, run),
            ),
            (
                model_service_pb2_grpc.add_ModelServiceServicer_to_server,
                ModelServicer(manager, config_file),
            ),
        ],
        service_names=[PREDICTION_SERVICE, MODEL_SERVICE],
        max_workers=max_workers,
    )
