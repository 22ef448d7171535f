"""The scoped-key dependency of the HTTP edge (mlcycle.common.http.auth), on an in-process app."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request

from mlcycle.common.http import (
    RouteAccess,
    UnlistedRoute,
    add_health_routes,
    exposed_key_ring,
    install_error_handlers,
)
from mlcycle.common.keys import Caller, KeyConfigError, KeyRing, Scope
from mlcycle.common.settings import load_settings

READER, WRITER, ADMIN, LEGACY = "reader-secret", "writer-secret", "admin-secret", "bare-secret"
RING = KeyRing.from_entries(
    [f"reader:read:{READER}", f"writer:ingest:{WRITER}", f"ops:admin:{ADMIN}", LEGACY]
)
TABLE = {
    ("GET", "/v1/things"): Scope.READ,
    ("POST", "/v1/things"): Scope.INGEST,
    ("POST", "/v1/things/{thing}:hand"): Scope.ADMIN,
}


def build(ring: KeyRing, table: dict[tuple[str, str], Scope] = TABLE) -> FastAPI:
    """A small app shaped like the services': a guarded router, a hand-checked route, health."""
    access = RouteAccess(ring, table)
    app = FastAPI()
    install_error_handlers(app)
    add_health_routes(app, lambda: {})
    router = APIRouter(prefix="/v1", dependencies=access.dependencies())

    @router.get("/things")
    def things(caller: Caller = Depends(access.caller)) -> dict[str, Any]:
        return {"caller": caller.name, "legacy": caller.legacy}

    @router.post("/things")
    def add() -> dict[str, str]:
        return {"added": "yes"}

    app.include_router(router)

    @app.post("/v1/things/{thing}:hand", openapi_extra=access.openapi_security())
    async def hand(thing: str, request: Request) -> dict[str, str]:
        return {"by": access.authorize(request).name}

    return access.verify(app)


def call(app: FastAPI, method: str, path: str, secret: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(go())


def test_no_key_or_an_unknown_one_is_401_with_a_bearer_challenge() -> None:
    app = build(RING)
    for secret in (None, "not-configured"):
        response = call(app, "GET", "/v1/things", secret)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthenticated"


def test_a_key_without_the_scope_is_403_naming_the_scope_needed() -> None:
    app = build(RING)
    response = call(app, "POST", "/v1/things", READER)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden" and "'ingest'" in error["message"]
    assert error["details"] == {"key": "reader", "required_scope": "ingest", "scopes": ["read"]}
    assert call(app, "GET", "/v1/things", WRITER).status_code == 403


def test_the_right_scope_or_admin_passes_and_the_handler_knows_the_key_name() -> None:
    app = build(RING)
    assert call(app, "GET", "/v1/things", READER).json() == {"caller": "reader", "legacy": False}
    assert call(app, "GET", "/v1/things", ADMIN).json() == {"caller": "ops", "legacy": False}
    assert call(app, "POST", "/v1/things", WRITER).json() == {"added": "yes"}
    legacy = call(app, "GET", "/v1/things", LEGACY).json()
    assert legacy["legacy"] is True and legacy["caller"].startswith("legacy-")


def test_hand_checked_routes_use_the_same_table() -> None:
    app = build(RING)
    assert call(app, "POST", "/v1/things/a:hand").status_code == 401
    assert call(app, "POST", "/v1/things/a:hand", WRITER).status_code == 403
    assert call(app, "POST", "/v1/things/a:hand", ADMIN).json() == {"by": "ops"}


def test_health_metrics_and_docs_stay_open() -> None:
    app = build(RING)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert call(app, "GET", path).status_code == 200, path


def test_openapi_documents_bearer_security_only_on_protected_routes() -> None:
    document = call(build(RING), "GET", "/openapi.json").json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    paths = document["paths"]
    assert paths["/v1/things"]["get"]["security"] == [{"HTTPBearer": []}]
    assert paths["/v1/things/{thing}:hand"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/healthz"]["get"]


def test_without_keys_everything_is_open_and_nothing_is_documented() -> None:
    open_ring = KeyRing()
    access = RouteAccess(open_ring, TABLE)
    assert access.dependencies() == [] and access.openapi_security() == {}
    app = build(open_ring)
    assert call(app, "GET", "/v1/things").json() == {"caller": "anonymous", "legacy": False}
    assert call(app, "POST", "/v1/things/a:hand").json() == {"by": "anonymous"}
    assert "securitySchemes" not in call(app, "GET", "/openapi.json").json().get("components", {})


def test_a_route_missing_from_the_table_stops_the_app_from_being_built() -> None:
    partial = {k: v for k, v in TABLE.items() if k != ("POST", "/v1/things")}
    with pytest.raises(UnlistedRoute, match="POST /v1/things has no scope"):
        build(RING, partial)
    extra = {**TABLE, ("GET", "/v1/gone"): Scope.READ}
    with pytest.raises(UnlistedRoute, match="GET /v1/gone"):
        build(RING, extra)


def test_scope_lookup_treats_head_as_get_and_knows_the_open_routes() -> None:
    access = RouteAccess(RING, TABLE, open_routes=[("GET", "/custom/metrics")])
    assert access.scope_of("head", "/v1/things") is Scope.READ
    assert access.scope_of("GET", "/healthz") is None
    assert access.scope_of("GET", "/custom/metrics") is None
    with pytest.raises(UnlistedRoute):
        access.scope_of("DELETE", "/v1/things")


def test_secrets_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    app = build(KeyRing(RING.keys))  # a fresh ring: the legacy warning comes once per ring
    with caplog.at_level(logging.DEBUG):
        for secret in (READER, WRITER, LEGACY, "wrong-secret"):
            call(app, "POST", "/v1/things", secret)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "bare keys are deprecated" in logged  # the legacy key was noticed...
    for secret in (READER, WRITER, LEGACY, "wrong-secret"):
        assert secret not in logged  # ...by its name, never its secret


def test_listening_beyond_loopback_needs_keys_or_auth_off(caplog: pytest.LogCaptureFixture) -> None:
    bare = load_settings().edge
    assert exposed_key_ring(bare, "127.0.0.1", service="collector").open
    with pytest.raises(KeyConfigError, match="collector would listen on 0.0.0.0"):
        exposed_key_ring(bare, "0.0.0.0", service="collector")
    off = load_settings(auth="off").edge
    with caplog.at_level(logging.WARNING):
        assert exposed_key_ring(off, "0.0.0.0", service="collector").open
    assert "MLCYCLE_AUTH=off" in caplog.text
    keyed = load_settings(api_keys=f"ops:admin:{ADMIN}").edge
    assert not exposed_key_ring(keyed, "0.0.0.0", service="collector").open
    with pytest.raises(KeyConfigError, match="unknown scope"):
        exposed_key_ring(load_settings(api_keys="ops:root:x").edge, "127.0.0.1", service="x")
