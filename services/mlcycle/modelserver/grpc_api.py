"""TF Serving's gRPC API: ``tensorflow.serving.PredictionService`` and ``ModelService``.

The servicers are the official ones from tensorflow-serving-api, registered on
the shared server builder (health, reflection, the error interceptor that maps
:class:`~mlcycle.common.errors.MlcycleError` to gRPC statuses). Codes and
messages follow TF Serving: an unknown model or version is NOT_FOUND
("Servable not found for request: Latest(name)"), bad inputs are
INVALID_ARGUMENT naming the input, an unknown Predict signature is
FAILED_PRECONDITION, MultiInference is UNIMPLEMENTED.

With API keys configured, every call but health needs a key (:data:`METHOD_SCOPES`):
``predict`` to ask for predictions, metadata or status, ``admin`` to reload the config.
A reload may only name base paths inside the model base directories the server was
given (``MLCYCLE_MODELS_DIR`` and the base paths it started with); any other is
PERMISSION_DENIED, naming the path, and the served versions stay as they were.
Without keys the API is TF Serving's, open to stock clients.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from mlcycle.common.errors import InvalidInput, MlcycleError
from mlcycle.common.grpc import GrpcServer, build_server
from mlcycle.common.grpc_auth import current_caller, method_name
from mlcycle.common.keys import Scope
from mlcycle.common.settings import EdgeSettings
from mlcycle.modelserver import metrics, prediction
from mlcycle.modelserver.config import confine_base_paths, model_settings
from mlcycle.modelserver.errors import Unimplemented
from mlcycle.modelserver.manager import ModelManager, VersionStatus
from mlcycle.modelserver.servable import Servable
from mlcycle.modelserver.watcher import ConfigFile

log = logging.getLogger(__name__)

PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name[
    "PredictionService"
].full_name
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name
# What each call needs when keys are configured; a method missing here is refused.
METHOD_SCOPES = {
    method_name(PREDICTION_SERVICE, "Predict"): Scope.PREDICT,
    method_name(PREDICTION_SERVICE, "Classify"): Scope.PREDICT,
    method_name(PREDICTION_SERVICE, "Regress"): Scope.PREDICT,
    method_name(PREDICTION_SERVICE, "MultiInference"): Scope.PREDICT,
    method_name(PREDICTION_SERVICE, "GetModelMetadata"): Scope.PREDICT,
    method_name(MODEL_SERVICE, "GetModelStatus"): Scope.PREDICT,
    method_name(MODEL_SERVICE, "HandleReloadConfigRequest"): Scope.ADMIN,
}
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

    def __init__(
        self,
        manager: ModelManager,
        config_file: ConfigFile | None = None,
        base_dirs: Sequence[Path] = (),
    ) -> None:
        self.manager = manager
        self.config_file = config_file
        self.base_dirs = tuple(base_dirs)

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

        Returns once the models of the new config are loaded, as TF Serving does; when
        the config's version labels point at a version that is not AVAILABLE then, the
        versions are served, the labels in force stay and the call fails with
        FAILED_PRECONDITION (TF Serving's rule and message). A
        base path outside :attr:`base_dirs` is refused before anything changes. An
        explicit empty ``model_config_list`` unloads every model, as in TF Serving: an
        ``admin`` key's call, logged with its name.
        """
        if request.config.WhichOneof("config") is not None:
            source = "ReloadConfigRequest.config"
            models = model_settings(request.config, source)
            confine_base_paths(models, self.base_dirs, source)
        elif self.config_file is not None:
            config = self.config_file.read()
            models = model_settings(config, str(self.config_file.path))
        else:
            raise InvalidInput(
                "ReloadConfigRequest.config has no model_config_list, and the server was not "
                "started with --model_config_file to re-read"
            )
        names = [m.name for m in models]
        caller = current_caller().name
        if not models:
            log.warning("unloading every model: an empty config", extra={"caller": caller})
        log.info("reloading the model config", extra={"models": names, "caller": caller})
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
    base_dirs: Sequence[Path] = (),
    edge: EdgeSettings | None = None,
    max_workers: int = 16,
) -> GrpcServer:
    """The model server's gRPC server, bound (``port=0``: a free port) but not started.

    ``base_dirs`` are where a ReloadConfigRequest may point base paths; ``edge`` the
    keys and limits (none and the defaults when None).
    """
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
                ModelServicer(manager, config_file, base_dirs),
            ),
        ],
        service_names=[PREDICTION_SERVICE, MODEL_SERVICE],
        method_scopes=METHOD_SCOPES,
        edge=edge,
        max_workers=max_workers,
    )
