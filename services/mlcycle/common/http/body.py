"""Request bodies read with a size limit: 413 as soon as the limit is known to be passed."""

from __future__ import annotations

from fastapi import Request
from starlette.requests import ClientDisconnect

from mlcycle.common.errors import InvalidInput, PayloadTooLarge


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
