"""The gRPC codes TF Serving answers with that mlcycle's error root has no class for.

The model server raises :class:`~mlcycle.common.errors.MlcycleError` subclasses like
every service; the shared gRPC interceptor turns them into statuses. TF Serving also
answers FAILED_PRECONDITION (an unknown signature in Predict), UNIMPLEMENTED and
DEADLINE_EXCEEDED, so those get their classes here.

:func:`http_status` is TF Serving's own table from gRPC code to HTTP status: its REST
API answers ``{"error": "<message>"}`` with the status of the code the same failure
has over gRPC.
"""

from __future__ import annotations

import grpc

from mlcycle.common.errors import MlcycleError, PayloadTooLarge


class FailedPrecondition(MlcycleError):
    """The request is well formed but the served model cannot answer it (unknown signature)."""

    http_status = 400
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    code = "failed_precondition"


class Unimplemented(MlcycleError):
    """An API the model server does not implement."""

    http_status = 501
    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    code = "unimplemented"


class DeadlineExceeded(MlcycleError):
    """The model did not answer within the request's time limit."""

    http_status = 504
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    code = "deadline_exceeded"


class ModelError(MlcycleError):
    """TensorFlow refused to run the model on the given inputs (a shape the graph rejects)."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    code = "invalid_input"


# TF Serving's REST handler maps each gRPC code to this HTTP status.
_HTTP_BY_GRPC = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


def http_status(error: MlcycleError) -> int:
    """The HTTP status TF Serving's REST API gives the gRPC code of ``error``.

    A body over the size limit is the one exception: TF Serving has no such limit,
    and 413 says what happened better than the 429 its code would map to.
    """
    if isinstance(error, PayloadTooLarge):
        return 413
    return _HTTP_BY_GRPC.get(error.grpc_code, 500)
