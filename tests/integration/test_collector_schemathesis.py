"""Property-based conformance of the collector's API with its own OpenAPI schema (schemathesis).

Generated requests go over real HTTP to a real server backed by the real
broker and a SQLite store, with an API key configured; every response must be
documented, match its schema, and never be a 5xx.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mlcycle.collector.api import create_app
from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.broker import EmbeddedBroker
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings
from mlcycle.common.store import open_store
from tests.fixtures.broker import broker_settings
from tests.fixtures.conformance import check_operation, load_schema

pytestmark = pytest.mark.integration

API_KEY = "schemathesis-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_EXAMPLES = 50


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """The schema describes an NDJSON body as an array: each item goes on its own line."""
    # The standard library, not orjson: generated data may hold integers beyond 64 bits.
    if isinstance(value, list):
        return "".join(json.dumps(item) + "\n" for item in value).encode()
    return json.dumps(value).encode()


@pytest.fixture(scope="module")
def collector_url(kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory):
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    app_settings: Settings = broker_settings(
        kafka_broker.bootstrap, data_dir, api_keys=(API_KEY,), max_batch_records=5
    )
    store = open_store(app_settings)
    producer = RecordProducer(app_settings, client_id="schemathesis")
    server = BackgroundServer(
        create_app(app_settings, store=store, producer=producer), "127.0.0.1", 0
    )
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        producer.close()
        store.close()


@pytest.fixture(scope="module")
def api_schema(collector_url: str) -> schemathesis.BaseSchema:
    return load_schema(collector_url)


OPERATIONS = [
    ("POST", "/v1/comments"),
    ("POST", "/v1/votes"),
    ("GET", "/v1/comments/{comment_id}"),
    ("GET", "/v1/comments"),
    ("GET", "/v1/stats"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]


# Negative data exists only where the schema constrains something (a body, a bounded limit).
CASES = [(method, path, GenerationMode.POSITIVE) for method, path in OPERATIONS] + [
    ("POST", "/v1/comments", GenerationMode.NEGATIVE),
    ("POST", "/v1/votes", GenerationMode.NEGATIVE),
    ("GET", "/v1/comments", GenerationMode.NEGATIVE),
]


def _opaque_cursor(case: schemathesis.Case) -> list[Any]:
    # A cursor is an opaque token: a random string is schema-valid yet rightly refused (400).
    return [positive_data_acceptance] if (case.query or {}).get("cursor") else []


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_api_conforms_to_its_schema(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    check_operation(
        api_schema,
        method,
        path,
        mode,
        headers=AUTH,
        max_examples=MAX_EXAMPLES,
        excluded=_opaque_cursor,
    )
