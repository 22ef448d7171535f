"""Streaming scores over the real broker, with the real model server and the real indexer:
comments in, scores out and on the stored comments, poison dead-lettered, outages waited out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from mlcycle.common.infra.process import free_port
from mlcycle.common.kafka.consumer import ConsumerLoop
from mlcycle.common.kafka.lag import group_lag
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.progress import CommittedOffsets
from mlcycle.common.settings import Settings, settings_to_env
from mlcycle.common.store import COMMENTS, Store, open_store
from mlcycle.inference.runtime import InferenceRuntime
from mlcycle.inference.stream import SERVICE, StreamScorer
from tests.fixtures.broker import LoopThread, indexer_thread, read_all, wait_for
from tests.fixtures.inference import World, built_models

pytestmark = pytest.mark.integration


class Scoring:
    """The stream scorer as ``run_stream`` wires it, on a thread."""

    def __init__(self, settings: Settings, store: Store, indexer_wait_s: float = 10.0) -> None:
        self.runtime = InferenceRuntime.open(settings)
        self.producer = RecordProducer(settings.kafka, client_id=SERVICE)
        self.offsets = CommittedOffsets(settings.kafka, settings.collector.indexer_group_id)
        handler = StreamScorer(
            self.runtime.predictor,
            store,
            self.producer,
            self.offsets,
            topic=settings.kafka.topics.scored_comments,
            batch_size=settings.inference.stream_batch_size,
            indexer_wait_s=indexer_wait_s,
        )
        self.loop = LoopThread(
            ConsumerLoop(
                settings.kafka,
                topics=[settings.kafka.topics.comments_raw],
                group_id=settings.inference.group_id,
                handler=handler,
                service=SERVICE,
                producer=self.producer,
            )
        )

    def stop(self) -> None:
        self.loop.stop()
        self.offsets.close()
        self.producer.close()
        self.runtime.close()


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_models(tmp_path_factory.mktemp("inference-models"))


@pytest.fixture
def world(models_root: Path, tmp_path: Path) -> Iterator[World]:
    world = World(models_root, tmp_path / "serving")
    world.start_server()
    yield world
    world.stop_server()


@pytest.fixture
def settings(kafka_settings: Settings, world: World) -> Settings:
    serving = world.settings()
    return kafka_settings.model_copy(
        update={
            "artifacts_dir": serving.featurizer.artifacts_dir,
            "models_dir": serving.trainer.models_dir,
            "model_server_target": serving.modelserver.target,
            "version_refresh_s": 0.2,
            "inference_group_id": f"inference.{uuid.uuid4().hex[:8]}",
            "stream_batch_size": 8,
        }
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.store)
    yield store
    store.close()


@pytest.fixture
def indexer(settings: Settings, store: Store) -> Iterator[LoopThread]:
    loop = indexer_thread(settings, store)
    yield loop
    loop.stop()


def comments(prefix: str, n: int) -> list[tuple[str, bytes]]:
    words = ["thanks", "idiot", "great", "stupid", "article", "moron"]
    return [
        (
            f"{prefix}-{i}",
            orjson.dumps(
                {
                    "id": f"{prefix}-{i}",
                    "text": f"{words[i % 6]} {words[(i * 5) % 6]} comment {i}",
                    "source": "test",
                    "metadata": {"year": 2001 + i % 10},
                }
            ),
        )
        for i in range(n)
    ]


def produce(settings: Settings, records: list[tuple[str | None, bytes]]) -> None:
    with RecordProducer(settings.kafka) as producer:
        for key, value in records:
            producer.send(settings.kafka.topics.comments_raw, key, value)
        producer.flush(30)


def scored(settings: Settings, expected: int) -> dict[str, list[dict]]:
    by_id: dict[str, list[dict]] = {}
    for record in read_all(settings, settings.kafka.topics.scored_comments, expected, timeout_s=60):
        by_id.setdefault(record.key.decode(), []).append(orjson.loads(record.value))
    return by_id


def stream_dead_letters(settings: Settings) -> list[dict]:
    letters = [
        orjson.loads(r.value)
        for r in read_all(settings, settings.kafka.topics.dlq(settings.kafka.topics.comments_raw))
    ]
    return [letter for letter in letters if letter["service"] == SERVICE]


def test_comments_are_scored_stored_and_produced_and_poison_is_dead_lettered(
    settings: Settings, store: Store, indexer: LoopThread
) -> None:
    scoring = Scoring(settings, store)
    try:
        batch = comments("c", 24)
        produce(settings, [*batch[:12], (None, b"{not json"), ("x", b'{"id": "x"}'), *batch[12:]])
        out = scored(settings, 24)
        assert sorted(out) == sorted(key for key, _ in batch)
        texts = [orjson.loads(value) for _, value in batch]
        _, expected = scoring.runtime.predictor.predict(
            [c["text"] for c in texts], [c["metadata"] for c in texts]
        )
        for comment, prediction in zip(texts, expected, strict=True):
            value = out[comment["id"]][-1]
            assert value["id"] == comment["id"]
            assert value["score"] == pytest.approx(prediction["score"], abs=1e-6)
            assert value["model_version"] == 1 and value["label"] == prediction["label"]
            assert value["scored_at"].endswith("Z")
            stored = store.get(COMMENTS, comment["id"])
            assert stored["text"] == comment["text"] and stored["metadata"] == comment["metadata"]
            assert stored["prediction"] == {k: v for k, v in value.items() if k != "id"}
        letters = stream_dead_letters(settings)
        assert sorted(letter["original"]["value"] for letter in letters) == [
            '{"id": "x"}',
            "{not json",
        ]
        assert any("text" in letter["error"] for letter in letters)

        # A new version of a comment: the indexer replaces it, then it is scored again.
        produce(settings, [("c-0", orjson.dumps({"id": "c-0", "text": "you stupid moron idiot"}))])
        wait_for(lambda: len(scored(settings, 25).get("c-0", [])) == 2, 60)
        latest = scored(settings, 25)["c-0"][-1]
        wait_for(lambda: store.get(COMMENTS, "c-0")["prediction"]["score"] == latest["score"])
        assert store.get(COMMENTS, "c-0")["text"] == "you stupid moron idiot"
    finally:
        scoring.stop()


def test_an_outage_is_waited_out_and_a_restart_resumes_without_loss(
    settings: Settings, store: Store, indexer: LoopThread, world: World
) -> None:
    scoring = Scoring(settings, store)
    port = world.port
    try:
        first = comments("a", 6)
        produce(settings, first)
        assert len(scored(settings, 6)) == 6
        world.stop_server()
        second = comments("b", 6)
        produce(settings, second)
        wait_for(lambda: scoring.loop.loop.stats.retries >= 1, 30)
        # Nothing of the second batch is committed, scored or dead-lettered.
        assert (
            group_lag(
                settings.kafka, settings.inference.group_id, [settings.kafka.topics.comments_raw]
            )
            == 6
        )
        assert len(scored(settings, 6)) == 6
        assert stream_dead_letters(settings) == []
    finally:
        scoring.stop()

    world.start_server(port)
    resumed = Scoring(settings, store)
    try:
        out = scored(settings, 12)
        assert sorted(out) == sorted(key for key, _ in first + second)
        wait_for(
            lambda: (
                group_lag(
                    settings.kafka,
                    settings.inference.group_id,
                    [settings.kafka.topics.comments_raw],
                )
                == 0
            )
        )
        assert all("prediction" in store.get(COMMENTS, key) for key, _ in second)
        assert stream_dead_letters(settings) == []
    finally:
        resumed.stop()


def test_scores_wait_for_the_indexer_so_neither_write_erases_the_other(
    settings: Settings, store: Store
) -> None:
    scoring = Scoring(settings, store, indexer_wait_s=1.0)
    late_indexer = None
    try:
        batch = comments("w", 5)
        produce(settings, batch)
        wait_for(lambda: scoring.loop.loop.stats.retries > 0, 30)
        assert scored(settings, 0) == {}  # waiting for the indexer: nothing written or produced
        assert store.get(COMMENTS, "w-0") is None
        late_indexer = indexer_thread(settings, store, topics=[settings.kafka.topics.comments_raw])
        assert len(scored(settings, 5)) == 5
        for key, value in batch:
            stored = store.get(COMMENTS, key)
            assert stored["text"] == orjson.loads(value)["text"] and "prediction" in stored
    finally:
        scoring.stop()
        if late_indexer is not None:
            late_indexer.stop()


def test_the_stream_command_waits_for_a_model_then_scores_and_stops_cleanly(
    settings: Settings, store: Store, indexer: LoopThread, models_root: Path, tmp_path: Path
) -> None:
    empty = World(models_root, tmp_path / "empty", versions=())
    empty.start_server()
    metrics_port = free_port()
    configured = settings.model_copy(
        update={
            "models_dir": empty.models,
            "model_server_target": f"127.0.0.1:{empty.port}",
            "inference_stream_metrics_port": metrics_port,
        }
    )
    env = {**os.environ, **settings_to_env(configured), "TF_CPP_MIN_LOG_LEVEL": "2"}
    base = f"http://127.0.0.1:{metrics_port}"
    with (tmp_path / "stream.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "inference", "stream"], env=env, stderr=log
        )
        try:
            wait_for(lambda: _status(f"{base}/healthz") == 200, 60)
            assert _status(f"{base}/readyz") == 503  # no model version yet
            produce(configured, comments("s", 4))
            wait_for(lambda: all(store.get(COMMENTS, f"s-{i}") for i in range(4)), 30)
            assert scored(configured, 0) == {}  # stored by the indexer, not scored: no model
            empty.add_version(1)
            assert len(scored(configured, 4)) == 4
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            empty.stop_server()


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
