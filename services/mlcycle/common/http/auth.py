"""The API-key dependency: ``Authorization: Bearer <key>`` on the routes that write."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlcycle.common.errors import Unauthenticated
from mlcycle.common.settings import EdgeSettings


async def _open_access() -> None:
    """No keys configured: every caller may write."""


def require_api_key(edge: EdgeSettings) -> Callable[..., Awaitable[None]]:
    """A dependency that demands ``Authorization: Bearer <key>`` when keys are configured.

    Without configured keys it lets everything through and documents no security
    scheme, so the OpenAPI schema says exactly what the server enforces.
    """
    keys = tuple(key.encode() for key in edge.api_keys)
    if not keys:
        return _open_access
    bearer = HTTPBearer(auto_error=False, description="An API key from MLCYCLE_API_KEYS")

    async def check_api_key(
        # A default rather than Annotated: the annotation is a string here and `bearer` is local.
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        if credentials is None:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        presented = credentials.credentials.encode()
        # Compare against every key in constant time, so timing tells nothing about which matched.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(presented, key)
        if not matched:
            raise Unauthenticated("invalid API key")

    return check_api_key
