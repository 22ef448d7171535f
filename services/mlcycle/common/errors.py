"""One exception root for mlcycle, carrying the HTTP status and gRPC code it maps to.

Business code raises these; only the edges translate them (one FastAPI
handler in :mod:`mlcycle.common.http`, one gRPC interceptor in
:mod:`mlcycle.common.grpc`). Anything else that escapes is a bug and is
reported as an internal error without leaking details.
"""

from __future__ import annotations

from typing import Any

import grpc


class MlcycleError(Exception):
    """Root of every error mlcycle raises on purpose."""

    http_status: int = 500
    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    code: str = "internal"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict[str, Any]:
        """The JSON error body every REST endpoint answers with."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(MlcycleError):
    """The request or record is malformed or fails validation."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    code = "invalid_input"


class ValidationFailed(InvalidInput):
    """Well-formed input whose fields fail validation."""

    http_status = 422
    code = "validation_failed"


class Unauthenticated(MlcycleError):
    """A call that needs an API key without a valid one."""

    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    code = "unauthenticated"


class Forbidden(MlcycleError):
    """A known API key whose scopes do not allow the call."""

    http_status = 403
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    code = "forbidden"


class NotFound(MlcycleError):
    """The addressed record or resource does not exist."""

    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND
    code = "not_found"


class Conflict(MlcycleError):
    """The request is valid but the state it needs is not there yet (e.g. an artifact)."""

    http_status = 409
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    code = "conflict"


class PayloadTooLarge(MlcycleError):
    """The request body or batch exceeds the configured limit."""

    http_status = 413
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = "payload_too_large"


class UnsupportedMediaType(MlcycleError):
    """The request body has a content type the endpoint does not read."""

    http_status = 415
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    code = "unsupported_media_type"


class TooManyRequests(MlcycleError):
    """The caller exceeded its rate limit; retry after a pause."""

    http_status = 429
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    code = "too_many_requests"
    # Whole seconds, as the Retry-After header carries them.
    retry_after_s: int = 1


class QueueFull(TooManyRequests):
    """A job queue holds as many waiting jobs as it may; retry once one has started."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class Unavailable(MlcycleError):
    """A dependency (broker, store, model server) cannot be reached right now."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
    code = "unavailable"


class StoreError(MlcycleError):
    """The store refused or failed an operation."""

    code = "store_error"
