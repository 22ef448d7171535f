"""Property-based conformance of every REST API with its own OpenAPI schema (schemathesis).

Each app runs over real HTTP, built as its integration tests build it, with an
API key configured: the collector on the real broker and a SQLite store; the
labeler with a finished label run and a worker that only notes new runs; the
featurizer with a transform fitted on that kind of run; the trainer with a
worker that only notes jobs (thousands of generated configs cost no
training); inference scoring with the real model server and caching in real
Redis. Every generated request must be answered as documented, conform to its
schema, and never be a 5xx.

Whether a valid-looking request finds its resource (a run, a transform, a model
version) depends on the store's state, and generated metadata may name fields a
model was not trained on, so positive data may be refused with a 4xx, except by
the collector, which must accept every valid record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from mlcycle.collector.api import create_app as collector_app
from mlcycle.common.http import BackgroundServer
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings, load_settings
from mlcycle.common.store import COMMENTS, VOTES, Store, open_store
from mlcycle.common.worker import JobWorker
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.contracts.label_runs import RunParams
from mlcycle.featurizer.api import create_app as featurizer_app
from mlcycle.featurizer.service import core_for
from mlcycle.inference.api import create_app as inference_app
from mlcycle.inference.runtime import InferenceRuntime
from mlcycle.labeler.api import create_app as labeler_app
from mlcycle.labeler.runs import LabelRunner
from mlcycle.trainer.api import create_app as trainer_app
from mlcycle.trainer.jobs import JobRunner
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.stages.context import JobEnvironment
from tests.fixtures.broker import broker_settings
from tests.fixtures.conformance import Excluded, check_operation, load_schema
from tests.fixtures.inference import NAME, World, built_models

pytestmark = pytest.mark.integration

API_KEY = "schemathesis-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
HEALTH = [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")]


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """The schema describes an NDJSON body as an array: each item goes on its own line."""
    # The standard library, not orjson: generated data may hold integers beyond 64 bits.
    if isinstance(value, list):
        return "".join(json.dumps(item) + "\n" for item in value).encode()
    return json.dumps(value).encode()


class NotingWorker(JobWorker):
    """Keeps submitted run or job ids instead of running them."""

    def submit(self, job_id: str) -> None:
        self.noted = [*getattr(self, "noted", []), job_id]


def _opaque_cursor(case: schemathesis.Case) -> list[Any]:
    # A cursor is an opaque token: a random string is schema-valid yet rightly refused (400).
    return [positive_data_acceptance] if (case.query or {}).get("cursor") else []


def _state_dependent(case: schemathesis.Case) -> list[Any]:
    return [positive_data_acceptance]


@dataclass(frozen=True)
class Api:
    """One app under test: which operations to drive, how hard, and what a 4xx may mean."""

    operations: list[tuple[str, str]]
    # Negative data exists only where the schema constrains something (a body, a bounded limit).
    negative: list[tuple[str, str]]
    max_examples: int
    excluded: Excluded
    start: Callable[[pytest.FixtureRequest], AbstractContextManager[FastAPI]]


@dataclass(frozen=True)
class Served:
    """A running app and its schema as the server publishes it."""

    api: Api
    schema: schemathesis.BaseSchema


def _seed(store: Store, n_items: int = 60) -> None:
    """Comments with three crowd votes each; items divisible by 4 are toxic."""
    words = "thanks for the edit please cite a source you idiot stupid revert page talk".split()
    comments = [
        Comment(id=f"c{i:03d}", text=" ".join(words[i % 7 : i % 7 + 5]), metadata={"year": 2010})
        for i in range(n_items)
    ]
    votes = [
        Vote(item_id=f"c{i:03d}", annotator_id=f"w{k}", label=int(i % 4 == 0))
        for i in range(n_items)
        for k in range(3)
    ]
    store.upsert(COMMENTS, [c.to_document() for c in comments])
    store.upsert(VOTES, [v.to_document() for v in votes])
    store.refresh()


def _on_the_broker(request: pytest.FixtureRequest, **overrides: object) -> Settings:
    """Settings on the session's broker, with topics of their own and the API key."""
    broker = request.getfixturevalue("kafka_broker")
    data_dir = request.getfixturevalue("tmp_path_factory").mktemp("schemathesis")
    return broker_settings(broker.bootstrap, data_dir, api_keys=(API_KEY,), **overrides)


@contextmanager
def _collector(request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    app_settings = _on_the_broker(request, max_batch_records=5)
    with ExitStack() as stack:
        store = open_store(app_settings.store)
        stack.callback(store.close)
        producer = RecordProducer(app_settings.kafka, client_id="schemathesis")
        stack.callback(producer.close)
        yield collector_app(app_settings, store=store, producer=producer)


@contextmanager
def _labeler(request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    app_settings = _on_the_broker(request)
    with ExitStack() as stack:
        store = open_store(app_settings.store)
        stack.callback(store.close)
        producer = RecordProducer(app_settings.kafka, client_id="schemathesis")
        stack.callback(producer.close)
        _seed(store)
        runner = LabelRunner(
            app_settings.labeler, store, producer, topic=app_settings.kafka.topics.labels
        )
        runner.execute(runner.create(RunParams(strategy="majority")).id)
        worker = NotingWorker(runner, name="noted")
        yield labeler_app(app_settings, store=store, producer=producer, worker=worker)


@contextmanager
def _featurizer(request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    app_settings = _on_the_broker(request, featurize_max_instances=50)
    with ExitStack() as stack:
        store = open_store(app_settings.store)
        stack.callback(store.close)
        _seed(store)
        with RecordProducer(app_settings.kafka) as producer:
            runner = LabelRunner(
                app_settings.labeler, store, producer, topic=app_settings.kafka.topics.labels
            )
            run = runner.execute(runner.create(RunParams(strategy="majority")).id)
        core = core_for(app_settings, store)
        core.fit(run.id)
        yield featurizer_app(app_settings, core=core, store=store)


@contextmanager
def _trainer(request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    data_dir = request.getfixturevalue("tmp_path_factory").mktemp("trainer-schemathesis")
    app_settings = load_settings(data_dir=data_dir, api_keys=(API_KEY,))
    store = open_store(app_settings.store)
    try:
        registry = ModelRegistry(app_settings.trainer, store)
        worker = NotingWorker(
            JobRunner(app_settings.trainer, store, registry, JobEnvironment.of(app_settings)),
            name="noted",
        )
        yield trainer_app(app_settings, store=store, worker=worker, registry=registry)
    finally:
        store.close()


@contextmanager
def _inference(request: pytest.FixtureRequest) -> Iterator[FastAPI]:
    factory = request.getfixturevalue("tmp_path_factory")
    redis_server = request.getfixturevalue("redis_server")
    world = World(built_models(factory.mktemp("inference-models")), factory.mktemp("inference"))
    world.start_server()
    try:
        app_settings = world.settings(
            redis_url=redis_server.url,
            api_keys=(API_KEY,),
            max_body_bytes=64 * 1024,
            predict_max_instances=50,
        )
        runtime = InferenceRuntime.open(app_settings)
        try:
            yield inference_app(app_settings, runtime)
        finally:
            runtime.close()
    finally:
        world.stop_server()


TF_PATH = "/v1/models/{name}:predict"

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
        start=_collector,
    ),
    "labeler": Api(
        operations=[
            ("POST", "/v1/label-runs"),
            ("GET", "/v1/label-runs"),
            ("GET", "/v1/label-runs/{run_id}"),
            ("GET", "/v1/labels/{item_id}"),
            ("GET", "/v1/labels"),
            ("GET", "/v1/review-queue"),
            ("POST", "/v1/labels"),
            *HEALTH,
        ],
        negative=[
            ("POST", "/v1/label-runs"),
            ("POST", "/v1/labels"),
            ("GET", "/v1/label-runs"),
            ("GET", "/v1/labels"),
            ("GET", "/v1/review-queue"),
        ],
        max_examples=40,
        excluded=_state_dependent,
        start=_labeler,
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
        start=_featurizer,
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
            *HEALTH,
        ],
        negative=[
            ("POST", "/v1/jobs"),
            ("POST", "/v1/models/{version}:promote"),
            ("GET", "/v1/models"),
        ],
        max_examples=40,
        excluded=_state_dependent,
        start=_trainer,
    ),
    "inference": Api(
        operations=[
            ("POST", "/v1/predict"),
            ("POST", TF_PATH),
            ("GET", "/v1/lineage/{comment_id}"),
            *HEALTH,
        ],
        negative=[("POST", "/v1/predict"), ("POST", TF_PATH)],
        max_examples=40,
        excluded=_state_dependent,
        start=_inference,
    ),
}


@pytest.fixture(scope="module")
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """The app named by the test's parameter, on a real server for the whole module."""
    api = APIS[request.param]
    with api.start(request) as app:
        server = BackgroundServer(app, "127.0.0.1", 0).start()
        try:
            yield Served(api, load_schema(f"http://127.0.0.1:{server.port}"))
        finally:
            server.stop()


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
        headers=AUTH,
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
