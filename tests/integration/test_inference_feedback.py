"""Moderators' decisions over real HTTP and the real broker, joined in real Redis to the scores
the inference service gave, and on to the labeler as trusted votes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.broker import EmbeddedBroker
from mlcycle.common.infra.process import free_port
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.kafka.consumer import ConsumerLoop
from mlcycle.common.kafka.lag import group_lag
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings, TopicNames, settings_to_env
from mlcycle.inference.api import create_app
from mlcycle.inference.feedback import FeedbackIntake, open_feedback_store
from mlcycle.inference.feedback_stream import SERVICE, FeedbackConsumer
from mlcycle.inference.runtime import InferenceRuntime
from mlcycle.monitoring.feedback_redis import KEY_PREFIX
from mlcycle.monitoring.feedback_store import ScoreRecord
from tests.fixtures.broker import LoopThread, broker_settings, read_all, unique_topics, wait_for
from tests.fixtures.inference import NAME, World, built_models

pytestmark = pytest.mark.integration

KEYS = (
    "ann:label:ann-secret",
    "bob:label:bob-secret",
    "svc:predict:svc-secret",
    "rdr:read:rdr-secret",
)
ANN = {"Authorization": "Bearer ann-secret"}
BOB = {"Authorization": "Bearer bob-secret"}
SVC = {"Authorization": "Bearer svc-secret"}
READ = {"Authorization": "Bearer rdr-secret"}


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_models(tmp_path_factory.mktemp("feedback-models"))


@pytest.fixture
def world(models_root: Path, tmp_path: Path) -> Iterator[World]:
    world = World(models_root, tmp_path / "serving")
    world.start_server()
    yield world
    world.stop_server()


@pytest.fixture
def settings(
    kafka_broker: EmbeddedBroker, redis_server: EmbeddedRedis, world: World, tmp_path: Path
) -> Iterator[Settings]:
    tag = uuid.uuid4().hex[:10]
    topics = TopicNames(
        **{
            **unique_topics(tag).model_dump(),
            "feedback": f"feedback.{tag}",
            "monitoring": f"monitoring.{tag}",
        }
    )
    # The join's keys are the service's own, not the test's: start each test without any.
    client = redis.Redis.from_url(redis_server.url)
    for key in client.scan_iter(f"{KEY_PREFIX}*"):
        client.delete(key)
    client.close()
    yield broker_settings(
        kafka_broker.bootstrap,
        tmp_path,
        topics=topics,
        artifacts_dir=world.root / "artifacts",
        models_dir=world.models,
        model_server_target=f"127.0.0.1:{world.port}",
        version_refresh_s=0.2,
        redis_url=redis_server.url,
        api_keys=KEYS,
        predict_max_instances=20,
        feedback_group_id=f"inference-feedback.{tag}",
        feedback_quality_window=10,
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[httpx.Client]:
    runtime = InferenceRuntime.open(settings)
    server = BackgroundServer(create_app(settings, runtime), "127.0.0.1", 0).start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
    yield client
    client.close()
    server.stop()
    runtime.close()


def scored(settings: Settings, comment_id: str) -> bool:
    client = redis.Redis.from_url(settings.cache.redis_url or "")
    try:
        return bool(client.exists(f"{KEY_PREFIX}sv:{comment_id}"))
    finally:
        client.close()


def windows(settings: Settings):
    store = open_feedback_store(settings, settings.cache.redis_url)
    try:
        return store.quality_windows(NAME, 1)
    finally:
        store.close()


def test_feedback_needs_the_label_scope(api: httpx.Client) -> None:
    body = [{"comment_id": "x", "label": 1}]
    assert api.post("/v1/feedback", json=body).status_code == 401
    assert api.post("/v1/feedback", json=body, headers=SVC).status_code == 403
    assert api.post("/v1/feedback", json=body, headers=ANN).status_code == 202


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"[]", 400, "empty"),
        (b'{"comment_id": "x", "label": 1}', 400, "JSON array"),
        (b"[{", 400, "malformed JSON"),
        (b'[{"comment_id": "x", "label": 2}]', 400, "label 2 is not a class of task"),
        (b'[{"comment_id": "x", "label": 1, "score": 3}]', 422, "decision 0: score"),
        (b'[{"label": 1}]', 422, "decision 0: comment_id"),
        (b'[{"comment_id": "x", "label": 1}, {"comment_id": "y", "label": -1}]', 422, "decision 1"),
        (orjson.dumps([{"comment_id": f"c{i}", "label": 1} for i in range(21)]), 413, "limit"),
        (b'[{"comment_id": "x", "label": 1, "reviewer": "bob"}]', 403, "not as 'bob'"),
        (b'[{"comment_id": "x", "label": 1, "task": "a\\u0001"}]', 400, "decision 0: task"),
    ],
)
def test_bad_feedback_is_a_4xx_naming_the_problem(
    api: httpx.Client, body: bytes, status: int, message: str
) -> None:
    answer = api.post(
        "/v1/feedback", content=body, headers={**ANN, "Content-Type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]["message"]


def test_decisions_join_the_predictions_they_judge(api: httpx.Client, settings: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b, tf, later = (f"{name}-{tag}" for name in ("a", "b", "tf", "later"))
    body = {"instances": [{"text": "you idiot", "id": a}, {"text": "thanks", "id": b}]}
    answer = api.post("/v1/predict", json=body, headers=SVC)
    assert answer.status_code == 200, answer.text
    # The TF Serving row format carries ids too.
    row = {"instances": ["no id", {"text": "great article", "id": tf}]}
    assert api.post(f"/v1/models/{NAME}:predict", json=row, headers=SVC).status_code == 200
    wait_for(lambda: scored(settings, a) and scored(settings, b) and scored(settings, tf), 10)

    decisions = [
        {"comment_id": a, "label": 1, "decided_at": "2030-01-01T00:00:00Z"},
        {"comment_id": b, "label": 0},
        {"comment_id": later, "label": 1},
    ]
    first = api.post("/v1/feedback", json=decisions, headers=ANN)
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": 3, "joined": 2, "pending": 1, "duplicate": 0}
    again = api.post("/v1/feedback", json=decisions[:1], headers=ANN)
    assert again.json() == {"accepted": 1, "joined": 0, "pending": 0, "duplicate": 1}
    other = api.post("/v1/feedback", json=[{"comment_id": tf, "label": 0}], headers=BOB)
    assert other.json()["joined"] == 1

    # The decision that came first joins when its comment is scored.
    body = {"instances": [{"text": "moron", "id": later}]}
    assert api.post("/v1/predict", json=body, headers=SVC).status_code == 200
    wait_for(lambda: windows(settings)[-1].decisions == 4, 10)
    window = windows(settings)[-1]
    assert window.pending == 0 and window.closed_at is None
    assert window.realized is not None and window.realized.comments == 4
    assert window.estimated is not None and window.estimated.comments == 4
    assert window.label_lag_s["max"] > 3600  # decided in 2030
    # GET /v1/monitoring shows the version's quality windows beside its drift signals.
    monitoring = api.get("/v1/monitoring", params={"version": 1}, headers=READ)
    assert monitoring.status_code == 200, monitoring.text
    (version,) = monitoring.json()["versions"]
    assert version["quality"][-1]["decisions"] == 4

    # Every decision reached the labeler as a trusted human vote (the duplicate too: upserted).
    votes = [
        orjson.loads(r.value)
        for r in read_all(settings, settings.kafka.topics.votes_reviewed, expected=5)
    ]
    assert {(v["item_id"], v["annotator_id"], v["label"]) for v in votes} == {
        (a, "human:ann", 1),
        (b, "human:ann", 0),
        (later, "human:ann", 1),
        (tf, "human:bob", 0),
    }
    assert all(v["source"] == "review" for v in votes)


def test_the_feedback_topic_dead_letters_bad_records_and_joins_the_next(
    settings: Settings,
) -> None:
    tag = uuid.uuid4().hex[:8]
    store = open_feedback_store(settings, settings.cache.redis_url)
    intake = FeedbackIntake(settings, store)
    producer = RecordProducer(settings.kafka, client_id=SERVICE)
    loop = LoopThread(
        ConsumerLoop(
            settings.kafka,
            topics=[settings.kafka.topics.feedback],
            group_id=settings.monitoring.feedback_group_id,
            handler=FeedbackConsumer(intake, producer),
            service=SERVICE,
            producer=producer,
        )
    )
    try:
        store.record_scores([ScoreRecord(f"t-{tag}", NAME, 1, 0.8, 0.5, datetime.now(UTC))])
        topic = settings.kafka.topics.feedback
        records = [
            b"{not json",
            orjson.dumps({"comment_id": f"t-{tag}", "label": 1}),  # no reviewer
            orjson.dumps({"comment_id": f"t-{tag}", "label": 7, "reviewer": "mod"}),
            orjson.dumps({"comment_id": f"t-{tag}", "label": 1, "reviewer": "mod"}),
        ]
        producer.send_batch(topic, ((f"t-{tag}", value) for value in records))
        dead = read_all(settings, settings.kafka.topics.dlq(topic), expected=3)
        assert len(dead) == 3
        wait_for(lambda: windows(settings)[-1].decisions == 1, 15)
        group = settings.monitoring.feedback_group_id
        wait_for(lambda: group_lag(settings.kafka, group, [topic]) == 0, 15)
        (vote,) = [
            orjson.loads(r.value)
            for r in read_all(settings, settings.kafka.topics.votes_reviewed, expected=1)
        ]
        assert vote["annotator_id"] == "human:mod" and vote["item_id"] == f"t-{tag}"
    finally:
        loop.stop()
        producer.close()
        intake.close()
        store.close()


def test_the_feedback_command_joins_and_stops_cleanly(settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    configured = settings.model_copy(update={"feedback_metrics_port": port})
    store = open_feedback_store(settings, settings.cache.redis_url)
    store.record_scores([ScoreRecord(f"p-{tag}", NAME, 1, 0.3, 0.5, datetime.now(UTC))])
    env = {**os.environ, **settings_to_env(configured), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with (tmp_path / "feedback.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "inference", "feedback"], env=env, stderr=log
        )
        try:
            wait_for(lambda: _status(f"http://127.0.0.1:{port}/healthz") == 200, 60)
            decision = {"comment_id": f"p-{tag}", "label": 0, "reviewer": "mod"}
            with RecordProducer(settings.kafka) as producer:
                producer.send_batch(settings.kafka.topics.feedback, [(tag, orjson.dumps(decision))])
            wait_for(lambda: windows(settings)[-1].decisions == 1, 30)
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            store.close()


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
