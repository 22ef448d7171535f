"""The HTTP edge every service reuses: error bodies, API keys, body limits, metrics, health.

One module per concern; every name a service needs is importable from here:

- :mod:`.responses`: the ``{"error": {"code", "message", "details"}}`` shape and orjson responses;
- :mod:`.handlers`: every failure (ours, FastAPI's, unexpected) answered in that shape;
- :mod:`.auth`: the ``Authorization: Bearer`` API-key dependency;
- :mod:`.body`: the request body limit (413), as middleware and for routes that read bodies;
- :mod:`.edge`: what every app installs first: error handlers, body limit, metrics;
- :mod:`.health`: ``/healthz``, ``/readyz``, ``/metrics`` and the request metrics middleware;
- :mod:`.server`: serving an app in the foreground or on a background thread.
"""

from mlcycle.common.http.auth import require_api_key
from mlcycle.common.http.body import BodyLimit, read_body
from mlcycle.common.http.edge import install_body_limit, install_edge
from mlcycle.common.http.handlers import install_error_handlers
from mlcycle.common.http.health import (
    UNMATCHED_ROUTE,
    Healthy,
    MetricsMiddleware,
    Ready,
    add_health_routes,
    install_metrics,
)
from mlcycle.common.http.responses import (
    MAX_REPORTED_ERRORS,
    ErrorBody,
    ErrorDetail,
    OrjsonResponse,
    describe_validation_errors,
    error_response,
    error_responses,
)
from mlcycle.common.http.server import BackgroundServer, serve_app

__all__ = [
    "MAX_REPORTED_ERRORS",
    "UNMATCHED_ROUTE",
    "BackgroundServer",
    "BodyLimit",
    "ErrorBody",
    "ErrorDetail",
    "Healthy",
    "MetricsMiddleware",
    "OrjsonResponse",
    "Ready",
    "add_health_routes",
    "describe_validation_errors",
    "error_response",
    "error_responses",
    "install_body_limit",
    "install_edge",
    "install_error_handlers",
    "install_metrics",
    "read_body",
    "require_api_key",
    "serve_app",
]
