"""What a failed call to the model server means to the inference service.

- NOT_FOUND: the pinned version is gone (:class:`VersionGone`): the caller re-reads
  the serving version and scores again with its transform;
- UNAVAILABLE and DEADLINE_EXCEEDED: retried, then a 503 (:func:`unavailable`);
- a signature the version does not have, on an ``explain`` call: the version
  cannot explain (:class:`~mlcycle.contracts.explanations.NotExplainable`, a 409
  naming it). TF Serving and mlcycle's model server answer a Predict on an
  unknown signature FAILED_PRECONDITION ``Serving signature key "explain" not
  found.``; TF Serving's REST-side lookup says INVALID_ARGUMENT ``Serving
  signature name: "explain" not found in signature def``. Both are read as such;
- anything else: a 503 naming the model server and the code.

Every failed attempt is counted in ``mlcycle_inference_model_server_errors_total``.
"""

from __future__ import annotations

import logging

import grpc

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.explanations import NotExplainable
from mlcycle.inference.metrics import MODEL_SERVER_ERRORS

log = logging.getLogger(__name__)

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_SIGNATURE_CODES = frozenset(
    {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT}
)


class VersionGone(Exception):
    """The pinned model version is no longer served (NOT_FOUND): refresh and retry."""


def raise_unless_retryable(
    exc: grpc.RpcError,
    address: str,
    name: str,
    version: int,
    *,
    last: bool,
    explaining: bool = False,
) -> None:
    """Raise what a failed ``Predict`` means (VersionGone, NotExplainable, Unavailable)
    unless it may be retried; ``explaining`` when it asked for the ``explain`` signature."""
    code = exc.code()
    MODEL_SERVER_ERRORS.labels(code.name).inc()
    if code == grpc.StatusCode.NOT_FOUND:
        raise VersionGone(f"{name} version {version}: {exc.details()}") from None
    if explaining and lacks_signature(exc):
        raise NotExplainable.of(name, version) from None
    if code not in RETRYABLE or last:
        raise unavailable(exc, address) from None


def lacks_signature(exc: grpc.RpcError) -> bool:
    """True when the model server says the version has no such signature."""
    details = (exc.details() or "").lower()
    return exc.code() in _SIGNATURE_CODES and "signature" in details and "not found" in details


def unavailable(exc: grpc.RpcError, address: str) -> Unavailable:
    """The 503 of a failed call, logged."""
    code, details = exc.code(), exc.details()
    if code in RETRYABLE:
        message = f"the model server at {address} is unavailable ({code.name}: {details})"
    else:
        message = f"the model server at {address} refused the call ({code.name}: {details})"
    log.warning(message)
    return Unavailable(message, details={"model_server": address, "code": code.name})
