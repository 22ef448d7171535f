"""Shared fixtures. Real servers (broker, Elasticsearch-API server, Redis) are in fixtures/."""

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.search",
]
