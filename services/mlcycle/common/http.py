"""The HTTP edge every service reuses: error bodies, API keys, body limits, metrics, health.

Business code raises :class:`~mlcycle.common.errors.MlcycleError`; this module is
the one place that turns it (and FastAPI's own validation and HTTP errors, and
anything unexpected) into ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import hmac
import json
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlcycle.common.errors import (
    InvalidInput,
    MlcycleError,
    PayloadTooLarge,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)
from mlcycle.common.heap import freeze_heap
from mlcycle.common.metrics import HTTP_LATENCY, HTTP_REQUESTS
from mlcycle.common.settings import Settings

log = logging.getLogger(__name__)

# Requests that matched no route share one label, so random paths cannot grow the series count.
UNMATCHED_ROUTE = "<unmatched>"
# Field errors listed in a 422 body; the total count is always given.
MAX_REPORTED_ERRORS = 50


class OrjsonResponse(JSONResponse):
    """A JSON response rendered with orjson (compact, fast, handles datetimes)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            # orjson refuses integers beyond 64 bits, which a request may carry into an
            # error's details; the standard library writes them, and anything else as text.
            return json.dumps(content, default=str, ensure_ascii=False).encode("utf-8")


# -- the error body, as documented in every OpenAPI schema -------------------------------------


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine code, a sentence for people, and structured details."""

    code: str = Field(description="stable machine-readable code, e.g. validation_failed")
    message: str = Field(description="what is wrong, for a person")
    details: Any = Field(default=None, description="structured context (field errors, limits)")


class ErrorBody(BaseModel):
    """Every error response of every mlcycle REST endpoint."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting :class:`ErrorBody` for ``statuses``."""
    return {
        status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> OrjsonResponse:
    """A response in the shared error shape."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return OrjsonResponse(body, status_code=status, headers=headers)


# -- one exception handler per kind of failure, all answering in the same shape -----------------


async def _mlcycle_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MlcycleError)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, Unavailable | TooManyRequests):
        headers["Retry-After"] = "1"
    if exc.http_status >= 500:
        log.error("request failed: %s", exc.message, exc_info=exc)
    body = exc.to_body()["error"]
    return error_response(exc.http_status, body["code"], body["message"], body["details"], headers)


def describe_validation_errors(errors: list[Any]) -> dict[str, Any]:
    """Field errors as ``{"errors": [{"field", "loc", "message", "type"}], "error_count"}``.

    The rejected input values are left out on purpose: they can be large or sensitive.
    """
    listed = [
        {
            "field": ".".join(str(part) for part in err.get("loc", ())),
            "loc": list(err.get("loc", ())),
            "message": err.get("msg", ""),
            "type": err.get("type", ""),
        }
        for err in errors[:MAX_REPORTED_ERRORS]
    ]
    return {"errors": listed, "error_count": len(errors)}


async def _request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    fields = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in errors[:5])
    return error_response(
        422, "validation_failed", f"invalid request: {fields}", describe_validation_errors(errors)
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = f"HTTP {status}"
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    message = exc.detail if isinstance(exc.detail, str) else phrase
    details = None if isinstance(exc.detail, str) else exc.detail
    return error_response(status, code, message, details, dict(exc.headers or {}))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # Logged with the traceback here; the client only learns that it was our fault.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure in the ``{"error": {"code", "message", "details"}}`` shape."""
    app.add_exception_handler(MlcycleError, _mlcycle_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unexpected_error)


# -- API keys -----------------------------------------------------------------------------------


async def _open_access() -> None:
    """No keys configured: every caller may write."""


def require_api_key(settings: Settings) -> Callable[..., Awaitable[None]]:
    """A dependency that demands ``Authorization: Bearer <key>`` when keys are configured.

    Without configured keys it lets everything through and documents no security
    scheme, so the OpenAPI schema says exactly what the server enforces.
    """
    keys = tuple(key.encode() for key in settings.api_keys)
    if not keys:
        return _open_access
    bearer = HTTPBearer(auto_error=False, description="An API key from MLCYCLE_API_KEYS")

    async def check_api_key(
        # A default rather than Annotated: the annotation is a string here and `bearer` is local.
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        if credentials is None:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        presented = credentials.credentials.encode()
        # Compare against every key in constant time, so timing tells nothing about which matched.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(presented, key)
        if not matched:
            raise Unauthenticated("invalid API key")

    return check_api_key


# -- bodies with a size limit -------------------------------------------------------------------


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``max_bytes``.

    A declared ``Content-Length`` is checked before anything is read; a chunked body
    is read until one byte past the limit and no further.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidInput(
                "Content-Length is not a number", details={"content_length": declared}
            )
        if int(declared) > max_bytes:
            raise _too_large(max_bytes, int(declared))
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes, None)
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise InvalidInput("client disconnected before the body was complete") from exc
    return b"".join(chunks)


def _too_large(max_bytes: int, declared: int | None) -> PayloadTooLarge:
    details: dict[str, int] = {"max_body_bytes": max_bytes}
    if declared is not None:
        details["content_length"] = declared
    return PayloadTooLarge(f"request body is larger than {max_bytes} bytes", details=details)


# -- metrics ------------------------------------------------------------------------------------


class MetricsMiddleware:
    """Counts requests and times them per route template (``/v1/comments/{comment_id}``).

    Labels use the template, never the raw path, so the number of series stays bounded.
    A pure ASGI middleware: it does not buffer bodies or wrap responses.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            # path_format is the template without converters: /v1/comments/{comment_id}
            route = getattr(scope.get("route"), "path_format", None) or UNMATCHED_ROUTE
            method = scope.get("method", "")
            HTTP_LATENCY.labels(self.service, method, route).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()


def install_metrics(app: FastAPI, service: str) -> None:
    """Record request counts and latency for ``service`` on every route of ``app``."""
    app.add_middleware(MetricsMiddleware, service=service)


# -- health -------------------------------------------------------------------------------------


class Healthy(BaseModel):
    """The process is alive."""

    status: str = "ok"


class Ready(BaseModel):
    """Every dependency answered."""

    status: str = "ready"
    checks: dict[str, bool]


def _run_checks(ready_check: Callable[[], dict[str, bool]]) -> dict[str, bool]:
    try:
        return {name: bool(ok) for name, ok in ready_check().items()}
    except Exception:  # a check that blows up means "not ready", not a 500
        log.exception("readiness check failed")
        return {"ready_check": False}


def add_health_routes(
    app: FastAPI,
    ready_check: Callable[[], dict[str, bool]],
    degraded_check: Callable[[], dict[str, bool]] | None = None,
) -> None:
    """``GET /healthz`` (alive), ``GET /readyz`` (dependencies answer), ``GET /metrics``.

    ``ready_check`` returns one boolean per dependency; it may block (it runs in a
    worker thread). ``/readyz`` answers 503 naming the failed ones. The optional
    ``degraded_check`` covers dependencies the service works without (a cache):
    when one of those fails, ``/readyz`` answers 200 with ``"status": "degraded"``.
    """

    @app.get("/healthz", tags=["health"], response_model=Healthy, summary="Liveness")
    async def healthz() -> OrjsonResponse:
        return OrjsonResponse({"status": "ok"})

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Ready,
        summary="Readiness: every dependency answers",
        responses=error_responses(503),
    )
    def readyz() -> OrjsonResponse:
        checks = _run_checks(ready_check)
        failed = sorted(name for name, ok in checks.items() if not ok)
        if failed:
            return error_response(
                503, "unavailable", f"not ready: {', '.join(failed)}", {"checks": checks}
            )
        if degraded_check is not None:
            optional = _run_checks(degraded_check)
            checks.update(optional)
            if not all(optional.values()):
                return OrjsonResponse({"status": "degraded", "checks": checks})
        return OrjsonResponse({"status": "ready", "checks": checks})

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}
        },
    )
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# -- a server on a background thread ------------------------------------------------------------


class BackgroundServer:
    """A uvicorn server on a daemon thread.

    For the side endpoints of worker processes (an indexer's ``/healthz`` and
    ``/metrics`` while its main thread runs the consumer loop) and for tests that
    need real HTTP. Port 0 picks a free port; read it from :attr:`port`.
    """

    def __init__(self, app: ASGIApp, host: str, port: int, **config: Any) -> None:
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, **config)
        )
        self._thread = threading.Thread(target=self._server.run, name=f"http-{port}", daemon=True)

    def start(self, timeout_s: float = 10.0) -> BackgroundServer:
        """Start serving; returns once the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise Unavailable("the HTTP server did not start (is the port free?)")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish in-flight requests and stop."""
        self._server.should_exit = True
        self._thread.join(timeout_s)


def serve_app(app: ASGIApp, host: str, port: int, *, service: str) -> None:
    """Run ``app`` in the foreground until SIGINT/SIGTERM, then return normally.

    uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal
    under the handlers it found; with these in place that re-raise is
    harmless, so the caller's ``finally`` closes its backends and the process
    exits 0.
    """

    def stopped(signum: int, frame: object) -> None:
        log.info("%s stopping", service, extra={"signal": signal.Signals(signum).name})

    previous = {sig: signal.signal(sig, stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Everything imported and opened so far lives as long as the server: later
    # collections leave it alone (mlcycle.common.heap says why).
    objects, seconds = freeze_heap()
    log.debug("heap frozen", extra={"objects": objects, "seconds": round(seconds, 3)})
    try:
        log.info("%s listening", service, extra={"host": host, "port": port})
        uvicorn.run(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            log_config=None,  # logging is configured once by the entry point
            access_log=False,  # the metrics middleware counts requests
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
