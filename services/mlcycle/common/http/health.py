"""What every HTTP service exposes about itself: liveness, readiness, Prometheus metrics.

``MetricsMiddleware`` counts and times requests per route template; the routes
``/healthz``, ``/readyz`` and ``/metrics`` stay open whatever the API keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlcycle.common.http.responses import OrjsonResponse, error_response, error_responses
from mlcycle.common.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger(__name__)

# Requests that matched no route share one label, so random paths cannot grow the series count.
UNMATCHED_ROUTE = "<unmatched>"


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


class Healthy(BaseModel):
    """The process is alive."""

    status: str = "ok"


class Ready(BaseModel):
    """Every dependency answered (``ready``), or the service goes on without some (``degraded``)."""

    status: str = "ready"
    checks: dict[str, bool]
    # When degraded for a reason a boolean cannot tell (a batch being retried): why, by part.
    reasons: dict[str, str] | None = None


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
    degraded_reasons: Callable[[], dict[str, str]] | None = None,
) -> None:
    """``GET /healthz`` (alive), ``GET /readyz`` (dependencies answer), ``GET /metrics``.

    ``ready_check`` returns one boolean per dependency; it may block (it runs in a
    worker thread). ``/readyz`` answers 503 naming the failed ones. The optional
    ``degraded_check`` covers dependencies the service works without (a cache):
    when one of those fails, ``/readyz`` answers 200 with ``"status": "degraded"``.
    ``degraded_reasons`` names parts that are degraded with the reason why (a
    consumer retrying a failing batch); they appear as failed checks and under
    ``"reasons"``.
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
        optional = _run_checks(degraded_check) if degraded_check is not None else {}
        reasons = degraded_reasons() if degraded_reasons is not None else {}
        optional.update(dict.fromkeys(reasons, False))
        checks.update(optional)
        if reasons:
            return OrjsonResponse({"status": "degraded", "checks": checks, "reasons": reasons})
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
