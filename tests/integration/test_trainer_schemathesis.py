"""Property-based conformance of the trainer's API with its own OpenAPI schema (schemathesis).

Generated requests go over real HTTP to the trainer's app on a SQLite store
with an API key configured. Jobs are recorded but not executed (the worker
only notes them), so thousands of generated configs cost no training. Every
response must be documented, match its schema, and never be a 5xx. Whether a
valid-looking request finds its resource (a label run, a model version)
depends on the store's state, so positive data may be refused with a 4xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mlcycle.common.http import BackgroundServer
from mlcycle.common.settings import Settings, load_settings
from mlcycle.common.store import open_store
from mlcycle.common.worker import JobWorker
from mlcycle.trainer.api import create_app
from mlcycle.trainer.jobs import JobRunner
from mlcycle.trainer.registry import ModelRegistry
from tests.fixtures.conformance import check_operation, load_schema

pytestmark = pytest.mark.integration

API_KEY = "schemathesis-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_EXAMPLES = 40


class NotingWorker(JobWorker):
    """Keeps submitted job ids instead of running them."""

    def submit(self, job_id: str) -> None:
        self.noted = [*getattr(self, "noted", []), job_id]


@pytest.fixture(scope="module")
def trainer_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("trainer-schemathesis")
    app_settings: Settings = load_settings(data_dir=data_dir, api_keys=(API_KEY,))
    store = open_store(app_settings)
    registry = ModelRegistry(app_settings, store)
    worker = NotingWorker(JobRunner(app_settings, store, registry), name="noted")
    app = create_app(app_settings, store=store, worker=worker, registry=registry)
    server = BackgroundServer(app, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        store.close()


@pytest.fixture(scope="module")
def api_schema(trainer_url: str) -> schemathesis.BaseSchema:
    return load_schema(trainer_url)


OPERATIONS = [
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/trials"),
    ("GET", "/v1/jobs/{job_id}/report"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{version}"),
    ("POST", "/v1/models/{version}:promote"),
    ("POST", "/v1/models:rollback"),
]
CASES = [(method, path, GenerationMode.POSITIVE) for method, path in OPERATIONS] + [
    ("POST", "/v1/jobs", GenerationMode.NEGATIVE),
    ("POST", "/v1/models/{version}:promote", GenerationMode.NEGATIVE),
    ("GET", "/v1/models", GenerationMode.NEGATIVE),
]


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
        excluded=lambda case: [positive_data_acceptance],
    )
