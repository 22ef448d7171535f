"""The live monitor across two inference replicas: real HTTP, the real model server and
SavedModel, one real Redis aggregate and the real broker's monitoring topic.

Each replica gets half of every window's records; the window is judged once, on the
sum, and a drifted window's alarm goes out as one event per signal, whichever replica
closed it. Both replicas answer the same state.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.broker import EmbeddedBroker
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.kafka.admin import ensure_topics
from mlcycle.common.settings import Settings
from mlcycle.contracts.monitoring import NGRAMS, OOV_SHARE, MonitoringEvent, QualityWindow
from mlcycle.inference.api import create_app
from mlcycle.inference.runtime import InferenceRuntime
from mlcycle.monitoring.profile import build_profile, write_profile
from tests.fixtures.broker import read_all, unique_topics, wait_for
from tests.fixtures.inference import NAME, TransformShelf, World, built_models, corpus

pytestmark = pytest.mark.integration

KEY = "monitor-reader:read:monitor-read-secret"
PREDICT_KEY = "monitor-caller:predict:monitor-predict-secret"
READ = {"Authorization": "Bearer monitor-read-secret"}
PREDICT = {"Authorization": "Bearer monitor-predict-secret"}
WINDOW = 200
UNSEEN = ["zorblax", "quintessa", "flumbergast", "vexillary", "sproink", "krumholz", "ombrelle"]


class Replica:
    """One inference API process's parts, on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.runtime = InferenceRuntime.open(settings)
        self.http = BackgroundServer(create_app(settings, self.runtime), "127.0.0.1", 0).start()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.http.port}", timeout=30)

    def predict(self, texts: list[str], metadata: list[dict]) -> None:
        instances = [{"text": t, "metadata": m} for t, m in zip(texts, metadata, strict=True)]
        for start in range(0, len(instances), 20):
            answer = self.client.post(
                "/v1/predict", json={"instances": instances[start : start + 20]}, headers=PREDICT
            )
            assert answer.status_code == 200, answer.text

    def monitoring(self, **params: object) -> httpx.Response:
        return self.client.get("/v1/monitoring", params=params, headers=READ)

    def signals(self) -> dict[str, dict]:
        answer = self.monitoring()
        assert answer.status_code == 200, answer.text
        (version,) = answer.json()["versions"]
        return {signal["signal"]: signal for signal in version["signals"]}

    def close(self) -> None:
        self.client.close()
        self.http.stop()
        self.runtime.close()


def profile_version(world: World, version: int = 1) -> None:
    """Write the version's reference profile from a dev split, as the trainer does at export."""
    texts, metadata, labels = corpus(n=600, seed=11)
    transform = TransformShelf.from_store(world.root / "artifacts")
    scores = world.direct_scores(version, texts)
    profile = build_profile(
        model=NAME,
        version=version,
        transform=transform,
        texts=texts,
        metadata=metadata,
        scores=scores,
        labels=np.array(labels),
        threshold=0.5,
        score_prior=None,
    )
    write_profile(world.models / NAME / str(version), profile)


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_models(tmp_path_factory.mktemp("inference-models"))


@pytest.fixture
def settings(
    models_root: Path, tmp_path: Path, redis_server: EmbeddedRedis, kafka_broker: EmbeddedBroker
) -> Iterator[Settings]:
    world = World(models_root, tmp_path)
    profile_version(world)
    world.start_server()
    tag = uuid.uuid4().hex[:10]
    topics = unique_topics(tag).model_copy(update={"monitoring": f"monitoring.{tag}"})
    settings = world.settings(
        redis_url=redis_server.url,
        kafka_bootstrap=kafka_broker.bootstrap,
        topics=topics,
        api_keys=(KEY, PREDICT_KEY),
        monitor_window_records=WINDOW,
        monitor_min_window_records=100,
        monitor_flush_s=0.1,
    )
    ensure_topics(settings.kafka)
    yield settings
    world.stop_server()


@pytest.fixture
def replicas(settings: Settings, redis_server: EmbeddedRedis) -> Iterator[list[Replica]]:
    # The session's Redis may hold this model's windows from another test: start clean.
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter(f"mlcycle:monitor:{{{NAME}:*"):
        client.delete(key)
    client.close()
    pair = [Replica(settings), Replica(settings)]
    yield pair
    for replica in pair:
        replica.close()


def halves(replicas: list[Replica], texts: list[str], metadata: list[dict]) -> None:
    """Each replica gets every other record."""
    replicas[0].predict(texts[0::2], metadata[0::2])
    replicas[1].predict(texts[1::2], metadata[1::2])


def unique(texts: list[str]) -> list[str]:
    """The texts made unseen (no cache hit), their words unchanged."""
    return [f"{text} {uuid.uuid4().hex[:6]}" for text in texts]


def test_two_replicas_share_one_window_and_raise_one_alarm_event(
    settings: Settings, replicas: list[Replica]
) -> None:
    texts, metadata, _ = corpus(n=WINDOW, seed=21)
    halves(replicas, texts, metadata)
    wait_for(lambda: replicas[1].signals()[NGRAMS]["windows"] == 1, timeout_s=30)
    first = replicas[0].signals()
    assert first[NGRAMS]["status"] == "ok"
    assert first[NGRAMS]["last"]["window"] == WINDOW  # both halves, judged once

    rng = random.Random(5)
    drifted = [" ".join(rng.choice(UNSEEN) for _ in range(rng.randint(15, 30))) for _ in texts]
    halves(replicas, unique(drifted), metadata)
    wait_for(lambda: replicas[0].signals()[NGRAMS]["windows"] == 2, timeout_s=30)
    for replica in replicas:
        states = replica.signals()
        assert states[NGRAMS]["alarm"] and states[OOV_SHARE]["alarm"]
        assert states[NGRAMS]["last"]["window"] == WINDOW
    raised = {s for s, state in replicas[1].signals().items() if state["alarm"]}

    topic = settings.kafka.topics.monitoring
    records = read_all(settings, topic, expected=len(raised))
    events = [MonitoringEvent.model_validate_json(record.value) for record in records]
    assert sorted(e.result.signal for e in events) == sorted(raised)  # one each, not two
    assert {e.kind for e in events} == {"alarm_raised"}
    assert [record.key.decode() for record in records] == [event.id for event in events]
    assert {e.id for e in events} == {f"{NAME}:1:{signal}:2" for signal in raised}

    history = replicas[0].client.get(
        "/v1/monitoring/history", params={"signal": NGRAMS}, headers=READ
    )
    assert history.status_code == 200, history.text
    items = history.json()["items"]
    assert [(i["window"], i["alarm"]) for i in items] == [(WINDOW, False), (WINDOW, True)]
    later = replicas[1].client.get(
        "/v1/monitoring/history",
        params={"since": items[0]["closed_at"], "signal": NGRAMS},
        headers=READ,
    )
    assert [i["alarm"] for i in later.json()["items"]] == [True]

    metrics = replicas[1].client.get("/metrics").text
    assert f'mlcycle_monitor_alarm{{model_version="1",signal="{NGRAMS}"}} 1.0' in metrics


def test_the_monitoring_routes_check_their_scope_and_their_parameters(
    replicas: list[Replica],
) -> None:
    client = replicas[0].client
    assert client.get("/v1/monitoring").status_code == 401
    assert client.get("/v1/monitoring", headers=PREDICT).status_code == 403
    assert client.get("/v1/monitoring/history", headers=PREDICT).status_code == 403
    whole = replicas[0].monitoring()
    assert whole.status_code == 200
    body = whole.json()
    assert body["model"] == NAME
    assert [v["model_version"] for v in body["versions"]] == [1]
    # The feedback join's windows (Redis is shared with other tests: whatever they left).
    quality = [QualityWindow.model_validate(w) for w in body["versions"][0]["quality"]]
    assert all(w.model_version == 1 for w in quality)
    assert {s["status"] for s in body["versions"][0]["signals"]} <= {"insufficient", "unavailable"}
    assert replicas[0].monitoring(version=1).json() == body

    missing = replicas[0].monitoring(version=9)
    assert missing.status_code == 404
    assert "version 9" in missing.json()["error"]["message"]
    for path, params, name in (
        ("/v1/monitoring", {"version": "one"}, "version"),
        ("/v1/monitoring", {"version": "0"}, "version"),
        ("/v1/monitoring/history", {"since": "yesterday"}, "since"),
        ("/v1/monitoring/history", {"since": "1767225600"}, "since"),  # not Unix time
        ("/v1/monitoring/history", {"limit": "0"}, "limit"),
        ("/v1/monitoring/history", {"limit": "100000"}, "limit"),
        ("/v1/monitoring/history", {"version": "-1"}, "version"),
        ("/v1/monitoring/history", {"signal": ""}, "signal"),
    ):
        answer = client.get(path, params=params, headers=READ)
        assert answer.status_code == 422, (path, params, answer.text)
        assert name in json.dumps(answer.json()["error"]), (path, params)
    empty = client.get(
        "/v1/monitoring/history", params={"since": "2026-01-01T00:00:00"}, headers=READ
    )
    assert empty.status_code == 200
    assert empty.json() == {"items": []}


def test_with_the_monitor_off_the_routes_say_so(settings: Settings) -> None:
    replica = Replica(settings.model_copy(update={"monitoring": settings.monitoring.model_copy(
        update={"enabled": False})}))  # fmt: skip
    try:
        assert replica.runtime.monitor is None
        assert replica.runtime.predictor.monitor is None
        texts, metadata, _ = corpus(n=20, seed=3)
        replica.predict(texts, metadata)
        signals = replica.signals()
        assert {s["status"] for s in signals.values()} == {"unavailable"}
        assert all("MLCYCLE_MONITOR_ENABLED" in s["reason"] for s in signals.values())
        history = replica.client.get("/v1/monitoring/history", headers=READ)
        assert history.json() == {"items": []}
    finally:
        replica.close()
