"""Who may call the inference routes, and how often: scoped API keys and per-caller buckets.

Keys are checked by the app's :class:`~mlcycle.common.http.RouteAccess` (``predict``
for both predict routes, ``read`` for lineage). A caller is its key's name when keys
are configured, else its client address; one over its limit gets 429 with
``Retry-After`` saying when a token is back.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response

from mlcycle.common.errors import MlcycleError, TooManyRequests, Unauthenticated
from mlcycle.common.http import RouteAccess, error_response
from mlcycle.common.keys import Caller
from mlcycle.common.settings import InferenceSettings
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
    """Scoped keys (through ``access``) and per-caller token buckets, for the inference routes."""

    def __init__(self, access: RouteAccess, config: InferenceSettings) -> None:
        self.access = access
        self.buckets = None
        if config.rate_limit_rps > 0:
            self.buckets = TokenBuckets(config.rate_limit_rps, config.rate_limit_burst)
        self.limit = self._limit_by_key() if access.keys_required else self._limit_by_address

    def dependencies(self) -> list[Any]:
        """The route dependencies needed: none when neither keys nor limits are configured.

        With limits, the key check runs first (the limit depends on the caller it finds).
        """
        if self.buckets is not None:
            return [Depends(self.limit)]
        return self.access.dependencies()

    async def admit(self, request: Request, presented: str | None = None) -> Caller:
        """Both checks outside FastAPI's dependency system (for the routes answering errors in
        their own shape); ``presented``: a key sent elsewhere than the Bearer header."""
        caller = self.access.authorize(request, presented)
        self._take(caller.name if self.access.keys_required else _address(request))
        return caller

    def _limit_by_key(self) -> Any:
        async def limit(caller: Caller = Depends(self.access.caller)) -> None:  # noqa: B008
            self._take(caller.name)

        return limit

    async def _limit_by_address(self, request: Request) -> None:
        self._take(_address(request))

    def _take(self, caller: str) -> None:
        """Take a token for ``caller`` (a key's name, or an address without keys)."""
        if self.buckets is None:
            return
        wait = self.buckets.take(caller)
        if wait > 0:
            raise RateLimited(wait, self.buckets.rate, self.buckets.burst)


def _address(request: Request) -> str:
    return request.client.host if request.client else "-"


def error_headers(error: MlcycleError) -> dict[str, str]:
    """The headers an error's status calls for, whatever shape its body takes: when to
    retry (a rate limit's own wait, else a second) and how to authenticate."""
    if isinstance(error, RateLimited):
        return {"Retry-After": error.retry_after}
    if error.http_status in (429, 503):
        return {"Retry-After": "1"}
    if isinstance(error, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    return {}
