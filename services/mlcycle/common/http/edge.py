"""What every HTTP app installs first: the error shape, the body limit, request metrics.

One call per app, so that no app can have one without the others. The order
matters: the metrics middleware is outermost (it counts every answer, the
413s included), the body limit next (it answers before routing, so before
parsing, API keys and handlers), then the app's own exception handlers.
"""

from __future__ import annotations

from fastapi import FastAPI

from mlcycle.common.http.body import BodyLimit, ErrorRenderer, shared_error_shape
from mlcycle.common.http.handlers import install_error_handlers
from mlcycle.common.http.health import install_metrics


def install_edge(
    app: FastAPI,
    *,
    service: str,
    max_body_bytes: int,
    render: ErrorRenderer = shared_error_shape,
) -> None:
    """Error handlers, the ``max_body_bytes`` limit (413) and request metrics on ``app``."""
    install_error_handlers(app)
    install_body_limit(app, max_body_bytes, render)
    install_metrics(app, service)


def install_body_limit(
    app: FastAPI, max_body_bytes: int, render: ErrorRenderer = shared_error_shape
) -> None:
    """Refuse bodies over ``max_body_bytes`` with 413 before routing (for apps with their own
    error handling and metrics, such as the model server's TF Serving REST API)."""
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, render=render)
