"""Every HTTP app refuses an oversized body before routing: 413, never 401, and no handler runs.

Each app is built as its service builds it, with an API key configured and
``MLCYCLE_MAX_BODY_BYTES`` small, and served over real HTTP. A body over the
limit sent without a key to a route that needs one must get 413 in the app's
error shape, whether its length is declared or it comes chunked. The request
must not reach the router: the request metrics count it under the unmatched
route, never under the route's own template, and the app's state is
unchanged. A small body to the same route still meets the key check (401), so
the route does need a key and the limit alone answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from mlcycle.collector.api import create_app as collector_app
from mlcycle.common.http import UNMATCHED_ROUTE, BackgroundServer
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.service import health_app
from mlcycle.common.settings import Settings, load_settings
from mlcycle.common.store import RUNS, Store, open_store
from mlcycle.common.worker import JobWorker
from mlcycle.featurizer.api import create_app as featurizer_app
from mlcycle.featurizer.service import core_for
from mlcycle.labeler.api import create_app as labeler_app
from mlcycle.labeler.runs import LabelRunner
from mlcycle.trainer.api import create_app as trainer_app
from mlcycle.trainer.jobs import JobRunner
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.stages.context import JobEnvironment
from tests.fixtures.broker import broker_settings, read_all

pytestmark = pytest.mark.integration

MAX_BODY = 4096
API_KEY = "body-limit-key"


@dataclass(frozen=True)
class Served:
    """One app under test: where it listens, the keyed route tried, and its state to compare."""

    url: str
    service: str
    route: str
    state: Callable[[], object]


def _settings(request: pytest.FixtureRequest, *, broker: bool) -> Settings:
    data_dir = request.getfixturevalue("tmp_path")
    overrides = {"api_keys": (API_KEY,), "max_body_bytes": MAX_BODY}
    if broker:
        bootstrap = request.getfixturevalue("kafka_broker").bootstrap
        return broker_settings(bootstrap, data_dir, **overrides)
    return load_settings(data_dir=data_dir, **overrides)


def _store(stack: ExitStack, settings: Settings) -> Store:
    store = open_store(settings.store)
    stack.callback(store.close)
    return store


def _producer(stack: ExitStack, settings: Settings) -> RecordProducer:
    producer = RecordProducer(settings.kafka, client_id="body-limits")
    stack.callback(producer.close)
    return producer


@contextmanager
def _collector(request: pytest.FixtureRequest) -> Iterator[tuple[FastAPI, str, Callable]]:
    settings = _settings(request, broker=True)
    with ExitStack() as stack:
        store, producer = _store(stack, settings), _producer(stack, settings)
        topic = settings.kafka.topics.votes_raw
        yield (
            collector_app(settings, store=store, producer=producer),
            "/v1/votes",
            lambda: len(read_all(settings, topic)),
        )


@contextmanager
def _labeler(request: pytest.FixtureRequest) -> Iterator[tuple[FastAPI, str, Callable]]:
    settings = _settings(request, broker=True)
    with ExitStack() as stack:
        store, producer = _store(stack, settings), _producer(stack, settings)
        runner = LabelRunner(settings.labeler, store, producer, topic=settings.kafka.topics.labels)
        worker = JobWorker(runner, name="label-runs")
        app = labeler_app(settings, store=store, producer=producer, worker=worker)
        yield app, "/v1/label-runs", lambda: store.count(RUNS)


@contextmanager
def _featurizer(request: pytest.FixtureRequest) -> Iterator[tuple[FastAPI, str, Callable]]:
    settings = _settings(request, broker=False)
    with ExitStack() as stack:
        store = _store(stack, settings)
        core = core_for(settings, store)
        app = featurizer_app(settings, core=core, store=store)
        yield app, "/v1/transforms", lambda: sorted(p.name for p in core.root.rglob("*"))


@contextmanager
def _trainer(request: pytest.FixtureRequest) -> Iterator[tuple[FastAPI, str, Callable]]:
    settings = _settings(request, broker=False)
    with ExitStack() as stack:
        store = _store(stack, settings)
        registry = ModelRegistry(settings.trainer, store)
        runner = JobRunner(settings.trainer, store, registry, JobEnvironment.of(settings))
        worker = JobWorker(runner, name="jobs")
        app = trainer_app(settings, store=store, worker=worker, registry=registry)
        yield app, "/v1/jobs", lambda: store.count(RUNS)


APPS: dict[str, Callable[[pytest.FixtureRequest], AbstractContextManager]] = {
    "collector": _collector,
    "labeler": _labeler,
    "featurizer": _featurizer,
    "trainer": _trainer,
}


@pytest.fixture(params=sorted(APPS))
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    with APPS[request.param](request) as (app, route, state):
        server = BackgroundServer(app, "127.0.0.1", 0).start()
        try:
            yield Served(f"http://127.0.0.1:{server.port}", request.param, route, state)
        finally:
            server.stop()


def _count(service: str, route: str, status: int) -> float:
    labels = {"service": service, "method": "POST", "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("mlcycle_http_requests_total", labels) or 0.0


def _shared_error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def test_an_oversized_body_gets_413_before_auth_and_no_handler_runs(served: Served) -> None:
    before = served.state()
    unmatched = _count(served.service, UNMATCHED_ROUTE, 413)
    routed = _count(served.service, served.route, 413)
    declared = httpx.post(f"{served.url}{served.route}", content=b"x" * (MAX_BODY + 1))
    assert declared.status_code == 413, declared.text
    error = _shared_error(declared)
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"max_body_bytes": MAX_BODY, "content_length": MAX_BODY + 1}

    sent: list[int] = []

    def chunked() -> Iterator[bytes]:
        for _ in range(4 * MAX_BODY // 512):
            sent.append(512)
            yield b"y" * 512

    streamed = httpx.post(f"{served.url}{served.route}", content=chunked())
    assert streamed.status_code == 413, streamed.text
    assert _shared_error(streamed)["details"] == {"max_body_bytes": MAX_BODY}

    # Neither reached the router: counted as unmatched, never under the route's template.
    assert _count(served.service, UNMATCHED_ROUTE, 413) == unmatched + 2
    assert _count(served.service, served.route, 413) == routed
    assert served.state() == before


def test_a_body_within_the_limit_still_meets_the_route(served: Served) -> None:
    small = httpx.post(
        f"{served.url}{served.route}", json={}, headers={"content-type": "application/json"}
    )
    assert small.status_code == 401, small.text


def test_a_consumer_process_health_app_takes_no_body(tmp_path: Path) -> None:
    store = open_store(load_settings(data_dir=tmp_path).store)
    server = BackgroundServer(health_app("collector-indexer", store), "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        refused = httpx.post(f"{url}/readyz", content=b"{}")
        assert refused.status_code == 413
        assert _shared_error(refused)["details"] == {"max_body_bytes": 0, "content_length": 2}
        assert httpx.get(f"{url}/readyz").json() == {"status": "ready", "checks": {"store": True}}
    finally:
        server.stop()
        store.close()


def test_every_module_that_builds_an_app_installs_the_limit() -> None:
    services = Path(__file__).resolve().parents[2] / "services" / "mlcycle"
    building = {
        str(path.relative_to(services)): path.read_text("utf-8")
        for path in services.rglob("*.py")
        if "FastAPI(" in path.read_text("utf-8")
    }
    assert len(building) >= 8
    without = [
        name
        for name, source in sorted(building.items())
        if "install_edge(" not in source and "install_body_limit(" not in source
    ]
    assert without == []
