"""Scoped API keys on HTTP routes: ``Authorization: Bearer <secret>``, one scope per route.

An app builds one :class:`RouteAccess` from its :class:`~mlcycle.common.keys.KeyRing`
and its route → scope table, puts :meth:`RouteAccess.dependencies` on its routers,
and declares ``caller: Caller = Depends(access.caller)`` where a handler records who
called. Each request is checked against the scope its matched route needs: no key or
an unknown one is 401, a key without the scope 403 naming it. The routes in
:data:`OPEN_ROUTES` (health, readiness, metrics, the OpenAPI docs) stay open.

Without configured keys every caller is :data:`~mlcycle.common.keys.OPEN_CALLER`, the
dependencies are none at all, and the OpenAPI documents no security scheme: the
schema says exactly what the server enforces.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mlcycle.common.keys import OPEN_CALLER, Caller, KeyRing, Scope, check_exposure
from mlcycle.common.settings import EdgeSettings

Route = tuple[str, str]
OPEN_ROUTES: frozenset[Route] = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/monitoring/prometheus/metrics"),  # TF Serving's metrics path
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
    }
)
SECURITY_SCHEME = "HTTPBearer"  # the name FastAPI gives an HTTPBearer scheme
BEARER_DESCRIPTION = "An API key from MLCYCLE_API_KEYS: `Authorization: Bearer <secret>`"


class UnlistedRoute(LookupError):
    """A route the scope table does not list (or a listed route the app lacks): a bug."""


def key_ring(edge: EdgeSettings) -> KeyRing:
    """The keys ``MLCYCLE_API_KEYS`` and ``MLCYCLE_API_KEYS_FILE`` configure."""
    return KeyRing.from_settings(edge.api_keys, edge.api_keys_file)


def exposed_key_ring(edge: EdgeSettings, host: str, *, service: str) -> KeyRing:
    """The configured keys, once it is safe to listen on ``host`` with them (fail closed).

    Raises :class:`~mlcycle.common.keys.KeyConfigError` for a malformed key and for a
    non-loopback ``host`` without keys, unless ``MLCYCLE_AUTH=off`` (then it warns).
    """
    ring = key_ring(edge)
    check_exposure(host, ring, auth=edge.auth, service=service)
    return ring


def bearer_token(request: Request) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header, if there is one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class RouteAccess:
    """Who may call each route of one app: its key ring and its route → scope table."""

    def __init__(
        self,
        ring: KeyRing,
        scopes: Mapping[Route, Scope],
        *,
        open_routes: Iterable[Route] = (),
    ) -> None:
        self.ring = ring
        self.scopes = dict(scopes)
        self.open_routes = OPEN_ROUTES | frozenset(open_routes)
        self.bearer = HTTPBearer(auto_error=False, description=BEARER_DESCRIPTION)
        self.caller = self._open_caller if ring.open else self._keyed_caller()

    @property
    def keys_required(self) -> bool:
        """Whether any key is configured (else every route is open)."""
        return not self.ring.open

    def scope_of(self, method: str, path: str) -> Scope | None:
        """The scope ``method path`` (a route template) needs; None for an open route."""
        method = "GET" if method.upper() == "HEAD" else method.upper()
        if (method, path) in self.open_routes:
            return None
        try:
            return self.scopes[(method, path)]
        except KeyError:
            raise UnlistedRoute(f"{method} {path} has no scope in the table") from None

    def dependencies(self) -> list[Any]:
        """Route dependencies that check the caller's key: none when no key is configured."""
        return [Depends(self.caller)] if self.keys_required else []

    def authorize(self, request: Request, presented: str | None = None) -> Caller:
        """Check the request's key against its matched route's scope (for routes that answer
        errors in their own shape, outside FastAPI's dependencies); 401 or 403 if it may not.

        The key is the Bearer header's, else ``presented`` (a route that also takes a key
        where its clients send one, such as Perspective's ``?key=``).
        """
        if not self.keys_required:
            return OPEN_CALLER
        return self._check(request, bearer_token(request) or presented)

    def openapi_security(self) -> dict[str, list[dict[str, list[str]]]]:
        """``openapi_extra`` for a route that calls :meth:`authorize` itself."""
        return {"security": [{SECURITY_SCHEME: []}]} if self.keys_required else {}

    def documenting_dependencies(self) -> list[Any]:
        """For an app whose every route calls :meth:`authorize` itself: a dependency that
        only reads the header, so the OpenAPI document declares the bearer scheme."""
        return [Depends(self.bearer)] if self.keys_required else []

    def verify(self, app: FastAPI) -> FastAPI:
        """Check the app's routes and the table name the same routes; returns the app.

        Raises :class:`UnlistedRoute`, so an app with a route nobody gave a scope
        (or a table entry no route matches) does not start.
        """
        served: set[Route] = set()
        # Routes of included routers too, with their full paths, as the OpenAPI lists them.
        for route in iter_route_contexts(app.routes):
            if isinstance(route.original_route, APIRoute) and route.path_format:
                for method in route.methods or ():
                    self.scope_of(method, route.path_format)
                    served.add((method, route.path_format))
        missing = sorted(set(self.scopes) - served)
        if missing:
            listed = ", ".join(f"{m} {p}" for m, p in missing)
            raise UnlistedRoute(f"the scope table lists routes the app lacks: {listed}")
        return app

    def _check(self, request: Request, presented: str | None) -> Caller:
        route = request.scope.get("route")
        path = getattr(route, "path_format", None)
        scope = self.scope_of(request.method, path) if path else Scope.ADMIN
        return OPEN_CALLER if scope is None else self.ring.authorize(presented, scope)

    @staticmethod
    async def _open_caller() -> Caller:
        return OPEN_CALLER

    def _keyed_caller(self) -> Callable[..., Awaitable[Caller]]:
        bearer, check = self.bearer, self._check

        async def caller(
            request: Request,
            # A default rather than Annotated: `bearer` is local to this function.
            credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        ) -> Caller:
            return check(request, credentials.credentials if credentials else None)

        return caller
