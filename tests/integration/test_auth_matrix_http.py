"""The authorization matrix of every HTTP app: each route, each caller, the status it gets.

The routes come from each app's own OpenAPI document, served over real HTTP with one
key per scope configured; the expected scope of each comes from the table the apps
enforce (:data:`mlcycle.contracts.access.ROUTE_SCOPES`). A route the document lists
that the table does not (or the reverse) fails the test, so a new route cannot escape.

Callers: no key, an unknown key, a key with a scheme other than Bearer, and one key per
scope. A protected route answers 401 to the first three, 403 naming the scope it needs
to a key without it, and anything but 401/403 to a key with it (or with ``admin``).
Health, readiness, metrics and the OpenAPI docs answer every caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mlcycle.common.http import OPEN_ROUTES
from mlcycle.common.keys import Scope
from mlcycle.contracts.access import ROUTE_SCOPES
from tests.fixtures import apps

pytestmark = pytest.mark.integration

SECRETS = {scope: f"{scope.value}-secret" for scope in Scope}
KEYS = tuple(f"{scope.value}-key:{scope.value}:{secret}" for scope, secret in SECRETS.items())
# (caller name, Authorization header or None, the scope it holds or None)
CALLERS: list[tuple[str, str | None, Scope | None]] = [
    ("no key", None, None),
    ("unknown key", "Bearer not-a-configured-secret", None),
    ("basic scheme", f"Basic {SECRETS[Scope.ADMIN]}", None),
    *((f"{scope.value} key", f"Bearer {secret}", scope) for scope, secret in SECRETS.items()),
]
PARAM = re.compile(r"\{([^}]+)\}")
# A value for a path parameter that passes validation, so the answer is about the key.
PATH_VALUES = {"version": "1", "path": "models/toxicity/metadata"}


@dataclass(frozen=True)
class Cell:
    """One route tried by one caller, and what came back."""

    service: str
    method: str
    path: str
    caller: str
    status: int
    expected: str
    body: str

    @property
    def ok(self) -> bool:
        if self.expected == "open":
            return self.status not in (401, 403)
        if self.expected == "allowed":
            return self.status not in (401, 403) and self.status < 500
        if self.expected == "401":
            return self.status == 401
        # 403 naming the scope the route needs
        scope = self.expected.removeprefix("403:")
        return self.status == 403 and f"'{scope}'" in self.body


def _expected(required: Scope | None, held: Scope | None) -> str:
    if required is None:
        return "open"
    if held is None:
        return "401"
    if held in (required, Scope.ADMIN):
        return "allowed"
    return f"403:{required.value}"


def _concrete(path: str) -> str:
    return PARAM.sub(lambda m: PATH_VALUES.get(m.group(1), "x"), path)


def _routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def _try(client: httpx.Client, method: str, path: str, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization else {}
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return client.request(method, _concrete(path), json=body, headers=headers)


@pytest.fixture(scope="module", params=list(apps.APPS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Each app on loopback with one key per scope: (service, base URL)."""
    with apps.APPS[request.param](request, KEYS) as url:
        yield request.param, url


MATRIX: list[Cell] = []


def test_every_route_answers_each_caller_as_its_scope_says(served: tuple[str, str]) -> None:
    service, url = served
    table = ROUTE_SCOPES[service]
    with httpx.Client(base_url=url, timeout=30) as client:
        document = client.get("/openapi.json").json()  # open, without a key
        assert client.get("/docs").status_code == 200
        routes = _routes(document)
        open_routes = {route for route in routes if route in OPEN_ROUTES}
        assert routes - open_routes == set(table), (
            f"{service}: routes without a scope: {sorted(routes - open_routes - set(table))}; "
            f"scopes for no route: {sorted(set(table) - routes)}"
        )
        cells = []
        for method, path in sorted(routes):
            required = None if (method, path) in open_routes else table[(method, path)]
            for caller, authorization, held in CALLERS:
                response = _try(client, method, path, authorization)
                cells.append(
                    Cell(
                        service,
                        method,
                        path,
                        caller,
                        response.status_code,
                        _expected(required, held),
                        response.text[:500],
                    )
                )
    MATRIX.extend(cells)
    wrong = [cell for cell in cells if not cell.ok]
    print(
        f"\n{service}: {len(routes)} routes x {len(CALLERS)} callers = {len(cells)} cells, "
        f"{len(wrong)} mismatches"
    )
    assert not wrong, "\n".join(
        f"{c.method} {c.path} as {c.caller}: {c.status}, expected {c.expected}: {c.body[:200]}"
        for c in wrong
    )


def test_the_whole_matrix_was_driven() -> None:
    """Every service's cells were tried: the total a reader can compare run to run."""
    services = {cell.service for cell in MATRIX}
    if services != set(apps.APPS):
        pytest.skip(f"only {sorted(services)} ran in this session")
    mismatches = sum(not cell.ok for cell in MATRIX)
    print(f"\nHTTP authorization matrix: {len(MATRIX)} cells, {mismatches} mismatches")
    protected = sum(len(table) for table in ROUTE_SCOPES.values())
    assert len(MATRIX) >= protected * len(CALLERS)
    assert mismatches == 0
