"""TF Serving's REST API, on the same versions as the gRPC API.

::

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]             model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata    signature definitions
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict     row or columnar format
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:classify    tf.Example lists
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:regress

Paths are matched as TF Serving matches them (case-insensitively, with its
regular expressions); anything else under ``/v1/`` is a malformed request.
Errors are TF Serving's ``{"error": "<message>"}`` with the HTTP status its
table gives the gRPC code of the same failure, so bad input is always 4xx.
Model work runs on worker threads under ``--rest_api_timeout_in_ms``.

With API keys configured, every ``/v1/`` call needs a key with the ``predict`` scope
(401 without one, 403 naming the scope for another key), answered in the same
``{"error": ...}`` shape; without keys the API is TF Serving's, open as it is.

Beside it, always open: ``/healthz``, ``/readyz`` (every configured model has an
AVAILABLE version), ``/metrics`` and ``/monitoring/prometheus/metrics``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

import anyio
import anyio.to_thread
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, regression_pb2

from mlcycle.common.errors import InvalidInput, MlcycleError, Unauthenticated
from mlcycle.common.http import RouteAccess, add_health_routes, install_body_limit, read_body
from mlcycle.common.keys import KeyRing
from mlcycle.contracts.access import route_scopes
from mlcycle.modelserver import json_tensors, metrics, prediction
from mlcycle.modelserver.config import PROMETHEUS_PATH
from mlcycle.modelserver.errors import DeadlineExceeded, FailedPrecondition, http_status
from mlcycle.modelserver.examples import input_from_json
from mlcycle.modelserver.manager import ModelManager, VersionStatus
from mlcycle.modelserver.servable import SERVING_DEFAULT, Servable

log = logging.getLogger(__name__)

_SPEC = r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
POST_PATH = re.compile(_SPEC + r":(classify|regress|predict)", re.IGNORECASE)
GET_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
JSON = "application/json"
PROMETHEUS_MEDIA_TYPE = CONTENT_TYPE_LATEST.split(";")[0]  # text/plain, as documented
SERVICE = "modelserver"
INTERNAL_MESSAGE = "internal error"


class RestApi:
    """The handlers, over one manager, with the way signatures are run."""

    def __init__(
        self,
        manager: ModelManager,
        run: prediction.Runner,
        timeout_s: float,
        max_body_bytes: int,
        access: RouteAccess,
    ) -> None:
        self.access = access
        self.manager = manager
        self.run = run
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> Response:
        """Dispatch one ``/v1/`` request and answer in TF Serving's shape."""
        started = time.perf_counter()
        observed = {"model": "", "version": "", "method": "status"}
        try:
            self.access.authorize(request)
            response, code = Response(await self._answer(request, observed), media_type=JSON), "OK"
        except MlcycleError as exc:
            response = _error_response(http_status(exc), exc.message)
            if isinstance(exc, Unauthenticated):
                response.headers["WWW-Authenticate"] = "Bearer"
            code = exc.grpc_code.name
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            response, code = _error_response(500, INTERNAL_MESSAGE), "INTERNAL"
        self._observe(observed, code, started)
        return response

    async def _answer(self, request: Request, observed: dict[str, str]) -> bytes:
        method, path = request.method, _raw_path(request)
        body = await read_body(request, self.max_body_bytes) if method == "POST" else b""
        work = self._work(method, path, body, observed)
        try:
            with anyio.fail_after(self.timeout_s):
                return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the request did not complete within {self.timeout_s * 1000:.0f} ms"
            ) from None

    def _observe(self, observed: dict[str, str], code: str, started: float) -> None:
        name = observed["model"]
        model = name if self.manager.is_configured(name) else metrics.UNKNOWN_MODEL
        seconds = time.perf_counter() - started
        metrics.observe_request(
            model, observed["version"], "rest", observed["method"], code, seconds
        )

    def _work(
        self, method: str, path: str, body: bytes, observed: dict[str, str]
    ) -> Callable[[], bytes]:
        if method == "POST" and (match := POST_PATH.fullmatch(path)):
            name, version, label, verb = match.groups()
            verb = verb.lower()
            observed.update(model=unquote(name), method=verb)
            handler = {"predict": self._predict, "classify": self._classify}.get(
                verb, self._regress
            )
            return lambda: handler(self._servable(name, version, label, observed), body)
        if method == "GET" and (match := GET_PATH.fullmatch(path)):
            name, version, label, sub = match.groups()
            if not name:
                raise InvalidInput("Missing model name in request.")
            observed.update(model=unquote(name), method="metadata" if sub else "status")
            if sub:
                return lambda: self._metadata(self._servable(name, version, label, observed))
            return lambda: self._status(unquote(name), version, label)
        raise InvalidInput(f"Malformed request: {method} {path}")

    def _servable(
        self, name: str, version: str | None, label: str | None, observed: dict[str, str]
    ) -> Servable:
        servable = self.manager.resolve(
            unquote(name),
            version=int(version) if version else None,
            label=unquote(label) if label else "",
        )
        observed["version"] = str(servable.version)
        return servable

    # -- POST -----------------------------------------------------------------------------------

    def _predict(self, servable: Servable, raw: bytes) -> bytes:
        body = _json_object(raw)
        key = _signature_name(body)
        try:
            signature = servable.signature(key)
        except FailedPrecondition:
            raise InvalidInput(
                f'Serving signature name: "{key or SERVING_DEFAULT}" not found in signature def'
            ) from None
        arrays, fmt = json_tensors.request_inputs(body, signature.input_dtypes)
        outputs = prediction.predict_arrays(servable, signature, arrays, (), self.run)
        return json_tensors.response_body(outputs, fmt)

    def _classify(self, servable: Servable, raw: bytes) -> bytes:
        body = _json_object(raw)
        request = classification_pb2.ClassificationRequest()
        request.model_spec.signature_name = _signature_name(body)
        request.input.CopyFrom(input_from_json(body, "classify"))
        response = prediction.classify(servable, request, self.run)
        # Scores are float32: np.float32 makes them print in float32's shortest form.
        results = [
            [[item.label, np.float32(item.score)] for item in entry.classes]
            for entry in response.result.classifications
        ]
        return json_tensors.dumps({"results": results})

    def _regress(self, servable: Servable, raw: bytes) -> bytes:
        body = _json_object(raw)
        request = regression_pb2.RegressionRequest()
        request.model_spec.signature_name = _signature_name(body)
        request.input.CopyFrom(input_from_json(body, "regress"))
        response = prediction.regress(servable, request, self.run)
        values = np.array([r.value for r in response.result.regressions], dtype=np.float32)
        return json_tensors.dumps({"results": values})

    # -- GET ------------------------------------------------------------------------------------

    def _status(self, name: str, version: str | None, label: str | None) -> bytes:
        statuses = self.manager.status(
            name, version=int(version) if version else None, label=unquote(label) if label else ""
        )
        return json_tensors.dumps({"model_version_status": [_status_json(s) for s in statuses]})

    def _metadata(self, servable: Servable) -> bytes:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.metadata_field.append(prediction.SIGNATURE_DEF_FIELD)
        response = prediction.metadata(servable, request)
        options: dict[str, Any] = {
            "preserving_proto_field_name": True,
            "always_print_fields_with_no_presence": True,
        }
        definitions = prediction.signature_def_map(servable.signature_defs)
        return json_tensors.dumps(
            {
                "model_spec": json_format.MessageToDict(response.model_spec, **options),
                "metadata": {"signature_def": json_format.MessageToDict(definitions, **options)},
            }
        )


def _status_json(status: VersionStatus) -> dict[str, Any]:
    return {
        "version": str(status.version),
        "state": status.state,
        "status": {"error_code": status.error_code, "error_message": status.error_message},
    }


def _raw_path(request: Request) -> str:
    """The path as sent (percent-escapes intact), matched before names are unescaped."""
    raw = request.scope.get("raw_path")
    if raw:
        return raw.decode("latin-1").split("?", 1)[0]
    return request.url.path


def _json_object(raw: bytes) -> dict[str, Any]:
    body = json_tensors.loads(raw)
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    return body


def _signature_name(body: dict[str, Any]) -> str:
    name = body.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidInput("'signature_name' key must be a string value.")
    return name


def _error_response(status: int, message: str) -> Response:
    return Response(json_tensors.dumps({"error": message}), status_code=status, media_type=JSON)


def _refusal(error: MlcycleError, scope: Scope) -> Response:
    """An edge refusal (a body over the limit) in TF Serving's error shape."""
    return _error_response(http_status(error), error.message)


class _AnyCaseV1:
    """Routes ``/V1/...`` like ``/v1/...``: TF Serving matches its paths case-insensitively."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path[:4].lower() == "/v1/" and not path.startswith("/v1/"):
            scope = {**scope, "path": "/v1/" + path[4:]}
        await self.app(scope, receive, send)


def build_app(
    manager: ModelManager,
    *,
    run: prediction.Runner = prediction.direct,
    timeout_s: float = 30.0,
    max_body_bytes: int = 16 * 1024 * 1024,
    prometheus_paths: Sequence[str] = (PROMETHEUS_PATH,),
    keys: KeyRing | None = None,
) -> FastAPI:
    """The REST app: TF Serving's ``/v1/`` API, health routes and Prometheus pages.

    ``keys`` (none by default: TF Serving's open API) guard the ``/v1/`` API.
    """
    paths = list(dict.fromkeys(prometheus_paths))
    access = RouteAccess(
        keys if keys is not None else KeyRing(),
        route_scopes(SERVICE),
        open_routes=[("GET", path) for path in paths],
    )
    api = RestApi(manager, run, timeout_s, max_body_bytes, access)
    app = FastAPI(
        title="mlcycle model server",
        description="TensorFlow Serving's REST API (model status, metadata, predict, "
        "classify, regress) on the versions the model server loads.",
        version="1",
    )

    async def tf_serving_api(request: Request, path: str) -> Response:
        return await api.handle(request)

    # One route per method, so each OpenAPI operation has an id of its own.
    for method in ("GET", "POST"):
        app.add_api_route(
            "/v1/{path:path}",
            tf_serving_api,
            methods=[method],
            operation_id=f"tf_serving_{method.lower()}",
            summary="TF Serving's REST API",
            description=__doc__,
            dependencies=access.documenting_dependencies(),
        )

    def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for route in paths:
        app.add_api_route(
            route,
            prometheus,
            methods=["GET"],
            tags=["health"],
            summary="Metrics",
            response_class=Response,
            responses={200: {"content": {PROMETHEUS_MEDIA_TYPE: {"schema": {"type": "string"}}}}},
        )
    add_health_routes(app, manager.readiness)
    # Before routing: an oversized body is refused (in TF Serving's shape) unread.
    install_body_limit(app, max_body_bytes, _refusal)
    app.add_middleware(_AnyCaseV1)
    return access.verify(app)
