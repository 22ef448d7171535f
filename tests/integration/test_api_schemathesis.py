"""Property-based conformance of every REST API with its own OpenAPI schema (schemathesis).

Each app runs over real HTTP, built as its integration tests build it
(:mod:`tests.fixtures.apps`), with scoped API keys on, driven with the admin key.
Every generated request must be answered as documented, conform to its schema, and
never be a 5xx.

Whether a valid-looking request finds its resource (a run, a transform, a model
version) depends on the store's state, and generated metadata may name fields a
model was not trained on, so positive data may be refused with a 4xx, except by
the collector, which must accept every valid record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance, status_code_conformance

from tests.fixtures import apps
from tests.fixtures.apps import AppBuilder
from tests.fixtures.conformance import Excluded, check_operation, load_schema
from tests.fixtures.inference import NAME

pytestmark = pytest.mark.integration

API_KEY = "schemathesis-key"
# Scoped keys on: a named admin key drives every route; the others only make the ring real.
KEYS = (f"schemathesis:admin:{API_KEY}", "reader:read:reader-key", "feeder:ingest:feeder-key")
AUTH = {"Authorization": f"Bearer {API_KEY}"}
HEALTH = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")]


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """The schema describes an NDJSON body as an array: each item goes on its own line."""
    # The standard library, not orjson: generated data may hold integers beyond 64 bits.
    if isinstance(value, list):
        return "".join(json.dumps(item) + "\n" for item in value).encode()
    return json.dumps(value).encode()


def _opaque_cursor(case: schemathesis.Case) -> list[Any]:
    # A cursor is an opaque token: a random string is schema-valid yet rightly refused (400).
    return [positive_data_acceptance] if (case.query or {}).get("cursor") else []


def _state_dependent(case: schemathesis.Case) -> list[Any]:
    return [positive_data_acceptance]


def _tf_serving(case: schemathesis.Case) -> list[Any]:
    # One catch-all route speaks TF Serving's API, whose statuses (404 for an unknown
    # model, 400 for a malformed path) its OpenAPI does not list: every generated path
    # must still be answered, as documented or refused, and never with a 5xx.
    return [positive_data_acceptance, status_code_conformance]


@dataclass(frozen=True)
class Api:
    """One app under test: which operations to drive, how hard, and what a 4xx may mean."""

    operations: list[tuple[str, str]]
    # Negative data exists only where the schema constrains something (a body, a bounded limit).
    negative: list[tuple[str, str]]
    max_examples: int
    excluded: Excluded
    start: AppBuilder


@dataclass(frozen=True)
class Served:
    """A running app and its schema as the server publishes it."""

    api: Api
    schema: schemathesis.BaseSchema


TF_PATH = "/v1/models/{name}:predict"
PERSPECTIVE_PATH = "/v1alpha1/comments:analyze"

APIS: dict[str, Api] = {
    "collector": Api(
        operations=[
            ("POST", "/v1/comments"),
            ("POST", "/v1/votes"),
            ("GET", "/v1/comments/{comment_id}"),
            ("GET", "/v1/comments"),
            ("GET", "/v1/stats"),
            *HEALTH,
        ],
        negative=[("POST", "/v1/comments"), ("POST", "/v1/votes"), ("GET", "/v1/comments")],
        max_examples=50,
        excluded=_opaque_cursor,
        start=apps.collector,
    ),
    "labeler": Api(
        operations=[
            ("POST", "/v1/label-runs"),
            ("GET", "/v1/label-runs"),
            ("GET", "/v1/label-runs/{run_id}"),
            ("GET", "/v1/labels/{item_id}"),
            ("GET", "/v1/labels"),
            ("GET", "/v1/review-queue"),
            ("GET", "/v1/label-issues"),
            ("POST", "/v1/labels"),
            *HEALTH,
        ],
        negative=[
            ("POST", "/v1/label-runs"),
            ("POST", "/v1/labels"),
            ("GET", "/v1/label-runs"),
            ("GET", "/v1/labels"),
            ("GET", "/v1/review-queue"),
            ("GET", "/v1/label-issues"),
        ],
        max_examples=40,
        excluded=_state_dependent,
        start=apps.labeler,
    ),
    "featurizer": Api(
        operations=[
            ("POST", "/v1/featurize"),
            ("GET", "/v1/transforms"),
            ("GET", "/v1/transforms/{version}"),
            ("POST", "/v1/transforms"),
            ("POST", "/v1/transforms/{version}/current"),
            ("GET", "/v1/feature-sets"),
            ("POST", "/v1/feature-sets"),
            ("GET", "/v1/feature-sets/{version}/{label_run}"),
            *HEALTH,
        ],
        negative=[
            ("POST", "/v1/featurize"),
            ("POST", "/v1/transforms"),
            ("POST", "/v1/feature-sets"),
        ],
        max_examples=40,
        excluded=_state_dependent,
        start=apps.featurizer,
    ),
    "trainer": Api(
        operations=[
            ("POST", "/v1/jobs"),
            ("GET", "/v1/jobs"),
            ("GET", "/v1/jobs/{job_id}"),
            ("GET", "/v1/jobs/{job_id}/trials"),
            ("GET", "/v1/jobs/{job_id}/report"),
            ("GET", "/v1/models"),
            ("GET", "/v1/models/{version}"),
            ("POST", "/v1/models/{version}:promote"),
            ("POST", "/v1/models:rollback"),
            ("POST", "/v1/rollouts"),
            ("GET", "/v1/rollouts"),
            ("GET", "/v1/rollouts/{rollout_id}"),
            ("POST", "/v1/rollouts/{rollout_id}:{order}"),
            ("POST", "/v1/retraining-runs"),
            ("GET", "/v1/retraining-runs"),
            ("GET", "/v1/retraining-runs/{run_id}"),
            ("POST", "/v1/retraining-runs/{run_id}/stages"),
            ("POST", "/v1/retraining-runs/{run_id}:stop"),
            *HEALTH,
        ],
        negative=[
            ("POST", "/v1/jobs"),
            ("POST", "/v1/models/{version}:promote"),
            ("GET", "/v1/models"),
            ("POST", "/v1/retraining-runs"),
            ("POST", "/v1/retraining-runs/{run_id}/stages"),
        ],
        max_examples=40,
        excluded=_state_dependent,
        start=apps.trainer,
    ),
    "inference": Api(
        operations=[
            ("POST", "/v1/predict"),
            ("POST", TF_PATH),
            ("GET", "/v1/lineage/{comment_id}"),
            ("GET", "/v1/positive-rate"),
            ("GET", "/v1/monitoring"),
            ("GET", "/v1/monitoring/history"),
            ("POST", "/v1/feedback"),
            ("POST", PERSPECTIVE_PATH),
            *HEALTH,
        ],
        negative=[
            ("POST", "/v1/predict"),
            ("POST", TF_PATH),
            ("GET", "/v1/positive-rate"),
            ("GET", "/v1/monitoring"),
            ("GET", "/v1/monitoring/history"),
            ("POST", "/v1/feedback"),
            ("POST", PERSPECTIVE_PATH),
        ],
        max_examples=40,
        excluded=_state_dependent,
        start=apps.inference,
    ),
    "modelserver": Api(
        operations=[
            ("GET", "/v1/{path}"),
            ("POST", "/v1/{path}"),
            ("GET", "/monitoring/prometheus/metrics"),
            *HEALTH,
        ],
        negative=[],
        max_examples=60,
        excluded=_tf_serving,
        start=apps.modelserver,
    ),
}


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """The app named by the test's parameter, on a real server for the whole module."""
    api = APIS[request.param]
    with api.start(request, KEYS) as url:
        yield Served(api, load_schema(url, bearer=API_KEY))


CASES = [
    pytest.param(name, method, path, mode, id=f"{name}-{method}-{path}-{mode.value}")
    for name, api in APIS.items()
    for (method, path), mode in [
        *((operation, GenerationMode.POSITIVE) for operation in api.operations),
        *((operation, GenerationMode.NEGATIVE) for operation in api.negative),
    ]
]


@pytest.mark.parametrize(("served", "method", "path", "mode"), CASES, indirect=["served"])
def test_api_conforms_to_its_schema(
    served: Served, method: str, path: str, mode: GenerationMode
) -> None:
    check_operation(
        served.schema,
        method,
        path,
        mode,
        headers={},  # the schema's auth config sends the admin key
        max_examples=served.api.max_examples,
        excluded=served.api.excluded,
    )


@pytest.mark.parametrize("served", list(APIS), indirect=True)
def test_every_operation_of_the_schema_is_driven(served: Served) -> None:
    """A route added later is driven here too, or this test names it."""
    published = {
        (operation.method.upper(), operation.path)
        for operation in (result.ok() for result in served.schema.get_all_operations())
    }
    assert published == set(served.api.operations)


def _served_model(case: schemathesis.Case) -> schemathesis.Case:
    case.path_parameters = {"name": NAME}
    return case


@pytest.mark.parametrize("served", ["inference"], indirect=True)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_tf_route_conforms_for_the_served_model(served: Served, mode: GenerationMode) -> None:
    """Generated bodies against the served model's name (random names are only 404s)."""
    operation = served.schema[TF_PATH]["POST"]

    @given(case=operation.as_strategy(generation_mode=mode).map(_served_model))
    @settings(
        max_examples=served.api.max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])

    check()
