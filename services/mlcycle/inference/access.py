"""Who may call the predict routes, and how often: API keys and per-caller token buckets.

Keys are checked by the shared ``require_api_key``; a caller is its API key
when keys are configured, else its client address. A caller over its limit
gets 429 with ``Retry-After`` saying when a token is back.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from mlcycle.common.errors import TooManyRequests
from mlcycle.common.http import error_response, require_api_key
from mlcycle.common.settings import EdgeSettings, InferenceSettings
from mlcycle.inference.ratelimit import TokenBuckets


class RateLimited(TooManyRequests):
    """A caller over its rate limit, with when to come back."""

    def __init__(self, retry_after_s: float, rate: float, burst: int) -> None:
        super().__init__(
            f"rate limit exceeded ({rate:g} requests/s, bursts of {burst}); "
            f"retry in {retry_after_s:.2f} s",
            details={"retry_after_s": round(retry_after_s, 3), "rate": rate, "burst": burst},
        )
        self.retry_after = str(max(1, math.ceil(retry_after_s)))


async def rate_limited_handler(request: Request, exc: Exception) -> Response:
    """Answer :class:`RateLimited` with the shared error body and its exact Retry-After."""
    assert isinstance(exc, RateLimited)
    return error_response(
        429, exc.code, exc.message, exc.details, headers={"Retry-After": exc.retry_after}
    )


class CallerGate:
    """API keys (``require_api_key``) and per-caller token buckets, for both predict routes."""

    def __init__(self, edge: EdgeSettings, config: InferenceSettings) -> None:
        self.keys_required = bool(edge.api_keys)
        self.check_key = require_api_key(edge)
        self.buckets = None
        if config.rate_limit_rps > 0:
            self.buckets = TokenBuckets(config.rate_limit_rps, config.rate_limit_burst)

    def dependencies(self) -> list[Any]:
        """The route dependencies needed: none when neither keys nor limits are configured."""
        needed = []
        if self.keys_required:
            needed.append(Depends(self.check_key))
        if self.buckets is not None:
            needed.append(Depends(self.limit))
        return needed

    async def limit(self, request: Request) -> None:
        """Take a token for the caller (its API key, or its address without keys)."""
        if self.buckets is None:
            return
        caller = _bearer(request) if self.keys_required else None
        if caller is None:
            caller = request.client.host if request.client else "-"
        wait = self.buckets.take(caller)
        if wait > 0:
            raise RateLimited(wait, self.buckets.rate, self.buckets.burst)

    async def admit(self, request: Request) -> None:
        """Both checks outside FastAPI's dependency system (for the TF-shaped route)."""
        if self.keys_required:
            token = _bearer(request)
            credentials = None
            if token is not None:
                credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
            await self.check_key(credentials=credentials)
        await self.limit(request)


def _bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
