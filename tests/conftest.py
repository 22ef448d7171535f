"""Shared fixtures and markers.

Real servers (broker, Elasticsearch-API server, Redis) are started by fixtures/.

Every test under ``tests/unit`` is marked ``unit`` (``make test-unit`` runs them alone),
except those marked ``integration`` there: they start a server or a subprocess.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.browser",
    "tests.fixtures.console",
    "tests.fixtures.embeddings",
    "tests.fixtures.encoder",
    "tests.fixtures.registry",
    "tests.fixtures.search",
    "tests.fixtures.tls",
]

UNIT_TESTS = Path(__file__).parent / "unit"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(UNIT_TESTS) and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.unit)
