"""Request bodies under a size limit: 413 as soon as the limit is known to be passed.

:class:`BodyLimit` is the ASGI middleware every app runs first: it refuses an
oversized body before routing, so before any parsing, any API-key check and
any handler. A declared ``Content-Length`` over the limit is refused without
reading a byte; a body without one (chunked) is read up to one byte past the
limit, then refused, or handed on whole. :func:`read_body` remains for the
routes that read their body themselves (NDJSON, TF Serving's shapes).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlcycle.common.errors import InvalidInput, MlcycleError, PayloadTooLarge
from mlcycle.common.http.responses import error_response

# How an app answers an error on a request (an app, or a route, may have its own error shape).
ErrorRenderer = Callable[[MlcycleError, Scope], Response]


def shared_error_shape(error: MlcycleError, scope: Scope) -> Response:
    """``{"error": {"code", "message", "details"}}`` with the error's status."""
    return error_response(error.http_status, error.code, error.message, error.details)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before the app sees the request.

    A pure ASGI middleware. Bodies with a declared length within the limit pass
    through untouched (the server delivers exactly that many bytes); a body
    without one is buffered up to the limit, which the app would do anyway.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, render: ErrorRenderer = shared_error_shape
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(_not_a_number(declared), scope, receive, send)
            elif int(declared) > self.max_bytes:
                await self._refuse(too_large(self.max_bytes, int(declared)), scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        messages = await self._read_up_to_limit(receive)
        if messages is None:
            await self._refuse(too_large(self.max_bytes, None), scope, receive, send)
            return
        await self.app(scope, _replay(messages, receive), send)

    async def _read_up_to_limit(self, receive: Receive) -> list[Message] | None:
        """The body's messages, or None once they pass the limit (nothing more is read)."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client left: the app sees the disconnect
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return messages

    async def _refuse(
        self, error: MlcycleError, scope: Scope, receive: Receive, send: Send
    ) -> None:
        await self.render(error, scope)(scope, receive, send)


def _content_length(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return str(value.decode("latin-1"))
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out the buffered messages, then the client's own."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``max_bytes``.

    A declared ``Content-Length`` is checked before anything is read; a chunked body
    is read until one byte past the limit and no further.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _not_a_number(declared)
        if int(declared) > max_bytes:
            raise too_large(max_bytes, int(declared))
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes, None)
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise InvalidInput("client disconnected before the body was complete") from exc
    return b"".join(chunks)


def _not_a_number(declared: str) -> InvalidInput:
    return InvalidInput("Content-Length is not a number", details={"content_length": declared})


def too_large(max_bytes: int, declared: int | None) -> PayloadTooLarge:
    """The 413 of a body over ``max_bytes`` (``declared``: its Content-Length, if it had one)."""
    details: dict[str, int] = {"max_body_bytes": max_bytes}
    if declared is not None:
        details["content_length"] = declared
    return PayloadTooLarge(f"request body is larger than {max_bytes} bytes", details=details)
