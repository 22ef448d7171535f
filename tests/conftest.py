"""Shared fixtures. Real servers (broker, Elasticsearch-API server, Redis) live in tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.search",
]
