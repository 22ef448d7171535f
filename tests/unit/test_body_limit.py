"""The body-limit middleware on its own, driven through the ASGI interface."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message

from mlcycle.common.http.body import BodyLimit

pytestmark = pytest.mark.unit

LIMIT = 1024


async def _echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"received": len(await request.body())})


def _app() -> BodyLimit:
    inner = Starlette(routes=[Route("/echo", _echo_size, methods=["GET", "POST"])])
    return BodyLimit(inner, max_bytes=LIMIT)


def _call(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes], method: str = "POST"
) -> tuple[int, dict, int]:
    """Status, JSON body, and how many body messages the app (or middleware) pulled."""
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        if pending:
            pulled += 1
            return pending.pop(0)
        await asyncio.sleep(3600)  # the client stays connected
        raise AssertionError("unreachable")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1234),
    }
    asyncio.run(_app()(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, orjson.loads(body), pulled


def _pieces(total: int, size: int = 256) -> Iterator[bytes]:
    while total > 0:
        yield b"x" * min(size, total)
        total -= size


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    status, body, pulled = _call([(b"content-length", b"1025")], list(_pieces(1025)))
    assert status == 413 and pulled == 0
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"] == {"max_body_bytes": LIMIT, "content_length": 1025}


def test_a_chunked_body_is_cut_off_one_byte_past_the_limit() -> None:
    chunks = list(_pieces(10 * LIMIT))
    status, body, pulled = _call([(b"transfer-encoding", b"chunked")], chunks)
    assert status == 413
    assert body["error"]["details"] == {"max_body_bytes": LIMIT}
    assert pulled == LIMIT // 256 + 1  # the first piece past the limit, and no further


@pytest.mark.parametrize("size", [0, 1, LIMIT])
def test_bodies_within_the_limit_reach_the_app_whole(size: int) -> None:
    declared = [(b"content-length", str(size).encode())]
    assert _call(declared, list(_pieces(size)) or [b""])[:2] == (200, {"received": size})
    chunked = [(b"transfer-encoding", b"chunked")]
    assert _call(chunked, list(_pieces(size)) or [b""])[:2] == (200, {"received": size})


def test_a_request_without_a_body_passes() -> None:
    assert _call([], [b""], method="GET")[:2] == (200, {"received": 0})


def test_a_content_length_that_is_not_a_number_is_400() -> None:
    status, body, pulled = _call([(b"content-length", b"12abc")], [b"x"])
    assert status == 400 and pulled == 0
    assert body["error"]["details"] == {"content_length": "12abc"}
