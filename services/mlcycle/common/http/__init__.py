"""The HTTP edge every service reuses: error bodies, API keys, body limits, metrics, health.

One module per concern; every name a service needs is importable from here:

- :mod:`.responses`: the ``{"error": {"code", "message", "details"}}`` shape and orjson responses;
- :mod:`.handlers`: every failure (ours, FastAPI's, unexpected) answered in that shape;
- :mod:`.auth`: scoped API keys (``Authorization: Bearer``), one scope per route;
- :mod:`.body`: the request body limit (413), as middleware and for routes that read bodies;
- :mod:`.edge`: what every app installs first: error handlers, body limit, metrics;
- :mod:`.health`: ``/healthz``, ``/readyz``, ``/metrics`` and the request metrics middleware;
- :mod:`.server`: serving an app in the foreground or on a background thread.
"""

from mlcycle.common.http.auth import (
    OPEN_ROUTES,
    RouteAccess,
    UnlistedRoute,
    bearer_token,
    exposed_key_ring,
    key_ring,
)
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
    "OPEN_ROUTES",
    "UNMATCHED_ROUTE",
    "UnlistedRoute",
    "BackgroundServer",
    "BodyLimit",
    "ErrorBody",
    "ErrorDetail",
    "Healthy",
    "MetricsMiddleware",
    "OrjsonResponse",
    "Ready",
    "RouteAccess",
    "add_health_routes",
    "bearer_token",
    "describe_validation_errors",
    "error_response",
    "error_responses",
    "exposed_key_ring",
    "install_body_limit",
    "install_edge",
    "install_error_handlers",
    "install_metrics",
    "key_ring",
    "read_body",
    "serve_app",
]
