"""Property-based conformance of the inference API with its own OpenAPI schema (schemathesis).

Generated requests go over real HTTP to the inference service, which scores
them with the real model server and caches in real Redis. Every response must
be documented, match its schema, and never be a 5xx. Generated metadata may
name fields the model was not trained on, so valid-looking requests may be
refused with a 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.inference.api import create_app
from mlcycle.inference.runtime import InferenceRuntime
from tests.fixtures.conformance import check_operation, load_schema
from tests.fixtures.inference import NAME, World, built_models

pytestmark = pytest.mark.integration

API_KEY = "schemathesis-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_EXAMPLES = 40


@pytest.fixture(scope="module")
def inference_url(
    tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis
) -> Iterator[str]:
    root: Path = built_models(tmp_path_factory.mktemp("inference-models"))
    world = World(root, tmp_path_factory.mktemp("inference-schemathesis"))
    world.start_server()
    settings = world.settings(
        redis_url=redis_server.url,
        api_keys=(API_KEY,),
        max_body_bytes=64 * 1024,
        predict_max_instances=50,
    )
    runtime = InferenceRuntime.open(settings)
    server = BackgroundServer(create_app(settings, runtime), "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        runtime.close()
        world.stop_server()


@pytest.fixture(scope="module")
def api_schema(inference_url: str) -> schemathesis.BaseSchema:
    return load_schema(inference_url)


OPERATIONS = [
    ("POST", "/v1/predict"),
    ("POST", "/v1/models/{name}:predict"),
    ("GET", "/readyz"),
    ("GET", "/healthz"),
]
CASES = [(method, path, GenerationMode.POSITIVE) for method, path in OPERATIONS] + [
    ("POST", "/v1/predict", GenerationMode.NEGATIVE),
    ("POST", "/v1/models/{name}:predict", GenerationMode.NEGATIVE),
]
TF_PATH = "/v1/models/{name}:predict"


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


def _served(case: schemathesis.Case) -> schemathesis.Case:
    case.path_parameters = {"name": NAME}
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_tf_route_conforms_for_the_served_model(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode
) -> None:
    """Generated bodies against the served model's name (random names are only 404s)."""
    operation = api_schema[TF_PATH]["POST"]

    @given(case=operation.as_strategy(generation_mode=mode).map(_served))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])

    check()
