"""A prediction's lineage over real HTTP, built by the real parts: comments and votes through
the broker and the collector-indexer into the store, a label run, a registered model version
served by the real model server, scores from the real stream scorer, the real Redis cache."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from schemathesis import GenerationMode

from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.process import free_port
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.kafka.consumer import ConsumerLoop
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.progress import CommittedOffsets
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, VOTES, Store, open_store
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.contracts.label_runs import RunParams
from mlcycle.inference.api import create_app
from mlcycle.inference.runtime import InferenceRuntime
from mlcycle.inference.stream import SERVICE, StreamScorer
from mlcycle.labeler.runs import LabelRunner
from mlcycle.trainer.registry import ModelRegistry
from tests.fixtures.broker import LoopThread, broker_settings, indexer_thread, wait_for
from tests.fixtures.conformance import check_operation, load_schema
from tests.fixtures.inference import NAME, World, built_models, mlcycle_command

pytestmark = pytest.mark.integration

KEY = "lineage-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
METRICS = {"dev": {"roc_auc": 0.93, "macro_f1": 0.81}, "test": {"roc_auc": 0.9, "macro_f1": 0.8}}
PARAMS = {"hidden_units": 8, "learning_rate": 0.05}
METADATA = {"year": 2005, "logged_in": True}


@dataclass
class Stack:
    settings: Settings
    store: Store
    url: str
    client: httpx.Client
    run_id: str
    streamed: list[Comment]
    unscored: Comment


def produce(settings: Settings, topic: str, records: list[Comment] | list[Vote]) -> None:
    with RecordProducer(settings.kafka) as producer:
        for record in records:
            producer.send(topic, *record.to_message())
        producer.flush(30)


def comment(tag: str, i: int, text: str) -> Comment:
    return Comment(id=f"{tag}/c-{i}", text=text, source="lineage-test", metadata=METADATA)


def scored(store: Store, ids: list[str]) -> bool:
    """Whether every comment of ``ids`` is stored with the stream's score."""
    found = store.get_many(COMMENTS, ids)
    return len(found) == len(ids) and all("prediction" in doc for doc in found.values())


@pytest.fixture(scope="module")
def stack(
    kafka_broker: Any, redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    world = World(built_models(tmp_path_factory.mktemp("models")), tmp_path_factory.mktemp("w"))
    world.start_server()
    serving = world.settings()
    tag = uuid.uuid4().hex[:8]
    settings = broker_settings(
        kafka_broker.bootstrap,
        world.data_dir,
        artifacts_dir=serving.featurizer.artifacts_dir,
        models_dir=serving.trainer.models_dir,
        model_server_target=serving.modelserver.target,
        version_refresh_s=0.2,
        inference_group_id=f"inference.{tag}",
        redis_url=redis_server.url,
        api_keys=(KEY,),
    )
    store = open_store(settings.store)
    indexer = indexer_thread(settings, store)
    runtime = InferenceRuntime.open(settings)
    producer = RecordProducer(settings.kafka, client_id=SERVICE)
    offsets = CommittedOffsets(settings.kafka, settings.collector.indexer_group_id)
    http = None
    try:
        streamed = [
            comment(tag, 0, "you are an idiot and a moron"),
            comment(tag, 1, "thanks for the great article"),
        ]
        votes = [
            Vote(item_id=streamed[0].id, annotator_id=worker, label=label)
            for worker, label in (("w1", 1), ("w2", 1), ("w3", 0))
        ]
        produce(settings, settings.kafka.topics.votes_raw, votes)
        scorer = LoopThread(
            ConsumerLoop(
                settings.kafka,
                topics=[settings.kafka.topics.comments_raw],
                group_id=settings.inference.group_id,
                handler=StreamScorer(
                    runtime.predictor,
                    store,
                    producer,
                    offsets,
                    topic=settings.kafka.topics.scored_comments,
                    batch_size=settings.inference.stream_batch_size,
                ),
                service=SERVICE,
                producer=producer,
            )
        )
        try:
            produce(settings, settings.kafka.topics.comments_raw, streamed)
            wait_for(lambda: scored(store, [c.id for c in streamed]), 60)
        finally:
            scorer.stop()
        wait_for(lambda: store.count(VOTES) == 3)
        with RecordProducer(settings.kafka) as labels_producer:
            runner = LabelRunner(
                settings.labeler, store, labels_producer, topic=settings.kafka.topics.labels
            )
            run = runner.execute(runner.create(RunParams(strategy="dawid_skene")).id)
        # Arrives after the label run and while no scorer runs: neither labeled nor scored.
        unscored = comment(tag, 2, "welcome, please help edit this page")
        produce(settings, settings.kafka.topics.comments_raw, [unscored])
        wait_for(lambda: store.get(COMMENTS, unscored.id) is not None)
        registry = ModelRegistry(settings.trainer, store)
        registry.register(
            NAME, 1, job="job-lineage", transform=runtime.tracker.current().transform_version,
            label_run=run.id, metrics=METRICS, params=PARAMS,
            path=str(world.models / NAME / "1"),
        )  # fmt: skip
        registry.bless(NAME, 1, "no production model to beat")
        registry.promote(NAME, 1, "first model")

        http = BackgroundServer(create_app(settings, runtime), "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{http.port}"
        with httpx.Client(base_url=url, timeout=30) as client:
            yield Stack(settings, store, url, client, run.id, streamed, unscored)
    finally:
        if http is not None:
            http.stop()
        indexer.stop()
        offsets.close()
        producer.close()
        runtime.close()
        store.close()
        world.stop_server()


def lineage(stack: Stack, comment_id: str, headers: dict[str, str] = AUTH) -> httpx.Response:
    return stack.client.get(f"/v1/lineage/{quote(comment_id, safe='/')}", headers=headers)


def test_a_streamed_comment_shows_its_whole_chain(stack: Stack) -> None:
    toxic = stack.streamed[0]
    answer = lineage(stack, toxic.id)
    assert answer.status_code == 200, answer.text
    chain = answer.json()

    assert chain["id"] == toxic.id
    assert chain["comment"]["text"] == toxic.text
    assert chain["comment"]["metadata"] == METADATA
    assert chain["votes"]["total"] == 3
    assert chain["votes"]["by_label"] == {"0": 1, "1": 2}
    label = chain["label"]
    assert label["run"] == stack.run_id
    assert label["chosen_from"] == "the label run the model was trained on"
    assert label["strategy"] == "dawid_skene"
    assert label["value"] == 1
    assert sorted(label["derivation"]["crowd"]) == ["w1", "w2", "w3"]
    assert label["derivation"]["labeling_functions"]  # the toxicity LFs voted too
    assert label["label_run"]["status"] == "succeeded"
    model = chain["model"]
    assert (model["name"], model["version"], model["state"]) == (NAME, 1, "production")
    assert model["metrics"] == METRICS
    assert model["hyperparameters"] == PARAMS
    assert model["label_run"] == stack.run_id
    assert model["blessing"]["blessed"] is True
    assert chain["transform"]["version"] == model["transform"]
    assert chain["transform"]["summary"]

    stored = stack.store.get(COMMENTS, toxic.id)["prediction"]
    score = chain["score"]
    assert score["source"] == "stream"
    assert score["score"] == stored["score"]
    assert score["scored_at"] == stored["scored_at"]
    assert score["model_version"] == score["serving_model_version"] == 1
    # The stored score's words, by the version that gave it, on the text as stored.
    assert [span["text"] for span in score["spans"]] == toxic.text.split()
    assert all(toxic.text[s["begin"] : s["end"]] == s["text"] for s in score["spans"])
    assert chain["missing"] == {}


def test_an_unscored_comment_is_scored_now_as_predict_would(stack: Stack) -> None:
    chain = lineage(stack, stack.unscored.id).json()

    assert chain["score"]["source"] == "scored_now"
    predicted = stack.client.post(
        "/v1/predict",
        json={"instances": [{"text": stack.unscored.text, "metadata": METADATA}]},
        headers=AUTH,
    ).json()["predictions"][0]
    assert chain["score"]["score"] == pytest.approx(predicted["score"], abs=1e-6)
    assert chain["score"]["label"] == predicted["label"]
    explained = stack.client.post(
        "/v1/predict",
        json={"instances": [{"text": stack.unscored.text, "metadata": METADATA}], "explain": True},
        headers=AUTH,
    ).json()["predictions"][0]
    assert chain["score"]["spans"] == explained["spans"]  # one explanation, cached for both
    again = lineage(stack, stack.unscored.id).json()["score"]
    assert again["cached"] is True  # the service's own cache, as for /v1/predict
    assert chain["votes"]["total"] == 0
    assert chain["label"] is None
    assert "not labeled in" in chain["missing"]["label"]
    assert chain["model"]["version"] == 1


def test_bad_requests_are_clear_4xx(stack: Stack) -> None:
    unknown = lineage(stack, "no-such-comment")
    assert unknown.status_code == 404
    assert "no comment with id 'no-such-comment'" in unknown.json()["error"]["message"]
    for malformed in ("a%00b", "x" * 600, "tab%09in"):
        answer = stack.client.get(f"/v1/lineage/{malformed}", headers=AUTH)
        assert answer.status_code == 422, (malformed, answer.text)
        assert "error" in answer.json()
    assert lineage(stack, stack.streamed[0].id, headers={}).status_code == 401


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_route_conforms_to_its_schema(stack: Stack, mode: GenerationMode) -> None:
    check_operation(
        load_schema(stack.url), "GET", "/v1/lineage/{comment_id}", mode,
        headers=AUTH, max_examples=25,
    )  # fmt: skip


def test_the_explain_command(stack: Stack) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return mlcycle_command("explain", *args)

    toxic = stack.streamed[0]
    tree = run(toxic.id, "--url", stack.url, "--api-key", KEY)
    assert tree.returncode == 0, tree.stderr
    as_json = run(toxic.id, "--url", stack.url, "--api-key", KEY, "--json")
    assert as_json.returncode == 0, as_json.stderr
    chain = json.loads(as_json.stdout)
    assert chain == lineage(stack, toxic.id).json()
    for shown in (
        f"comment {toxic.id}",
        "votes (toxicity): 3",
        f"run {stack.run_id}",
        f"transform {chain['transform']['version']}",
        "model toxicity v1 (production)",
        f"score {chain['score']['score']:.4f}",
        "stored by the stream",
    ):
        assert shown in tree.stdout, (shown, tree.stdout)
    unknown = run("no-such-comment", "--url", stack.url, "--api-key", KEY)
    assert unknown.returncode == 2
    assert "404" in unknown.stderr and "no-such-comment" in unknown.stderr
    down = run(toxic.id, "--url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2 and "cannot reach the inference service" in down.stderr
