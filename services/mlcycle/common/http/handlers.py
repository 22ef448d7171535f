"""One exception handler per kind of failure, all answering in the shared error shape.

Business code raises :class:`~mlcycle.common.errors.MlcycleError`; this module is
the one place that turns it (and FastAPI's own validation and HTTP errors, and
anything unexpected) into ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlcycle.common.errors import MlcycleError, TooManyRequests, Unauthenticated, Unavailable
from mlcycle.common.http.responses import describe_validation_errors, error_response

log = logging.getLogger(__name__)


async def _mlcycle_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MlcycleError)
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after_s)
    elif isinstance(exc, Unavailable):
        headers["Retry-After"] = "1"
    if exc.http_status >= 500:
        log.error("request failed: %s", exc.message, exc_info=exc)
    body = exc.to_body()["error"]
    return error_response(exc.http_status, body["code"], body["message"], body["details"], headers)


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
