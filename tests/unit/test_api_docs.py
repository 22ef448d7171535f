"""docs/api.md lists exactly the route → scope table the apps enforce."""

from __future__ import annotations

import re
from pathlib import Path

from mlcycle.contracts.access import CONSOLE_SCOPES, ROUTE_SCOPES

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ROW = re.compile(r"^\| (\w+) `(GET|POST|PUT|PATCH|DELETE) ([^`]+)` \| `(\w+)`", re.MULTILINE)
CONSOLE_ROW = re.compile(r"^\| `(GET|POST) (/console[^`]*)` \| `(\w+)`", re.MULTILINE)


def test_the_documented_scopes_are_the_enforced_ones() -> None:
    documented = {(m[0], m[1], m[2]): m[3] for m in ROW.findall(DOC.read_text(encoding="utf-8"))}
    enforced = {
        (service, method, path): scope.value
        for service, table in ROUTE_SCOPES.items()
        for (method, path), scope in table.items()
    }
    assert documented == enforced


def test_the_documented_console_scopes_are_the_enforced_ones() -> None:
    documented = {(m[0], m[1]): m[2] for m in CONSOLE_ROW.findall(DOC.read_text(encoding="utf-8"))}
    assert documented == {route: scope.value for route, scope in CONSOLE_SCOPES.items()}
