"""The inference service over real HTTP, against the real model server, real Redis and real
SavedModels trained and exported like the trainer does."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.process import free_port
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.settings import Settings, settings_to_env
from mlcycle.evaluation.priors import estimate_positive_rate
from mlcycle.inference.api import create_app
from mlcycle.inference.cache import cache_key, key_prefix
from mlcycle.inference.runtime import InferenceRuntime
from tests.fixtures.broker import wait_for
from tests.fixtures.inference import NAME, World, built_models, mlcycle_command

pytestmark = pytest.mark.integration

KEY, OTHER_KEY = "inference-key-a", "inference-key-b"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Service:
    """The inference API of ``settings`` on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = InferenceRuntime.open(settings)
        self.http = BackgroundServer(create_app(settings, self.runtime), "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.http.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def predict(self, *texts: str, headers: dict[str, str] = AUTH, **extra: object):
        body = {"instances": [{"text": t} for t in texts], **extra}
        return self.client.post("/v1/predict", json=body, headers=headers)

    def close(self) -> None:
        self.client.close()
        self.http.stop()
        self.runtime.close()


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_models(tmp_path_factory.mktemp("inference-models"))


@pytest.fixture
def world(models_root: Path, tmp_path: Path) -> Iterator[World]:
    world = World(models_root, tmp_path)
    world.start_server()
    yield world
    world.stop_server()


@pytest.fixture(scope="module")
def shared_world(models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = World(models_root, tmp_path_factory.mktemp("inference-shared"))
    world.start_server()
    yield world
    world.stop_server()


@pytest.fixture(scope="module")
def service(shared_world: World, redis_server: EmbeddedRedis) -> Iterator[Service]:
    settings = shared_world.settings(
        redis_url=redis_server.url,
        api_keys=(KEY, OTHER_KEY),
        max_body_bytes=4096,
        predict_max_instances=20,
    )
    service = Service(settings)
    yield service
    service.close()


# -- predictions and the cache ----------------------------------------------------------------


def test_a_miss_is_scored_by_the_model_and_cached_then_hit(
    service: Service, shared_world: World, redis_server: EmbeddedRedis
) -> None:
    text = unique("you are an idiot")
    transform = service.runtime.tracker.current().transform
    key = cache_key(key_prefix(NAME, 1, transform.version), text, None, 5000)
    cache = redis.Redis.from_url(redis_server.url)
    assert cache.get(key) is None
    hits_before = metric(
        service.client.get("/metrics").text, "mlcycle_inference_cache_hits_total", model_version="1"
    )

    first = service.predict(text)
    assert first.status_code == 200, first.text
    (prediction,) = first.json()["predictions"]
    assert prediction["model_version"] == 1
    assert prediction["transform_version"] == transform.version
    assert prediction["threshold"] == 0.5
    assert prediction["label"] == ("1" if prediction["score"] >= 0.5 else "0")
    direct = shared_world.direct_scores(1, [text])[0]
    assert prediction["score"] == pytest.approx(float(direct), abs=1e-5)
    assert cache.get(key) is not None
    assert 0 < cache.ttl(key) <= service.settings.inference.cache_ttl_s

    again = service.predict(f"  {text.replace(' ', '   ')}\n")  # the same text, normalized
    assert again.json()["predictions"] == [prediction]
    hits_after = metric(
        service.client.get("/metrics").text, "mlcycle_inference_cache_hits_total", model_version="1"
    )
    assert hits_after == hits_before + 1
    cache.close()


def test_batches_keep_their_order_and_metadata_counts(service: Service) -> None:
    texts = [unique(t) for t in ("thanks for the help", "stupid moron", "great article")]
    body = {
        "instances": [
            {"text": texts[0], "metadata": {"year": 2004, "logged_in": True}},
            {"text": texts[1]},
            {"text": texts[2], "metadata": {"year": 2015}},
        ]
    }
    answer = service.client.post("/v1/predict", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    batch = answer.json()["predictions"]
    singles = [
        service.client.post("/v1/predict", json={"instances": [i]}, headers=AUTH).json()
        for i in body["instances"]
    ]
    assert batch == [s["predictions"][0] for s in singles]
    plain = service.predict(texts[0]).json()["predictions"][0]
    assert plain["score"] != batch[0]["score"]  # the metadata is a feature


def test_the_tf_serving_shape(service: Service) -> None:
    texts = [unique("you moron"), unique("welcome to the page")]
    ours = service.predict(*texts).json()["predictions"]
    rows = service.client.post(
        f"/v1/models/{NAME}:predict",
        json={"instances": [texts[0], {"text": texts[1]}], "signature_name": "serving_default"},
        headers=AUTH,
    )
    assert rows.status_code == 200, rows.text
    assert rows.json() == {"predictions": ours}
    columns = service.client.post(
        f"/v1/models/{NAME}:predict", json={"inputs": {"text": texts}}, headers=AUTH
    )
    outputs = columns.json()["outputs"]
    assert outputs["score"] == [p["score"] for p in ours]
    assert outputs["model_version"] == [1, 1]
    unnamed = service.client.post(
        f"/v1/models/{NAME}:predict", json={"inputs": texts}, headers=AUTH
    )
    assert unnamed.json() == columns.json()

    unknown = service.client.post(
        "/v1/models/other:predict", json={"instances": ["a"]}, headers=AUTH
    )
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Servable not found for request: Latest(other)"}
    malformed = service.client.post(
        f"/v1/models/{NAME}:predict", content=b'{"instances": [', headers=AUTH
    )
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]
    wrong = service.client.post(f"/v1/models/{NAME}:predict", json={"instances": [3]}, headers=AUTH)
    assert wrong.status_code == 400 and "instances.0" in wrong.json()["error"]
    anonymous = service.client.post(f"/v1/models/{NAME}:predict", json={"instances": ["a"]})
    assert anonymous.status_code == 401 and "API key" in anonymous.json()["error"]


def test_api_keys_are_required(service: Service) -> None:
    missing = service.predict("hello", headers={})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "unauthenticated"
    wrong = service.predict("hello", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"
    assert (
        service.predict("hello", headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code
        == 200
    )
    assert service.client.get("/healthz").status_code == 200


def test_an_oversized_body_is_413_before_the_key_check_in_each_route_shape(
    service: Service,
) -> None:
    def routed_413s(route: str) -> float:
        text = service.client.get("/metrics").text
        return metric(
            text,
            "mlcycle_http_requests_total",
            service="inference",
            method="POST",
            route=route,
            status="413",
        )

    unmatched, routed = routed_413s("<unmatched>"), routed_413s("/v1/predict")
    oversized = b"x" * 4097
    shared = service.client.post("/v1/predict", content=oversized, headers={})
    assert shared.status_code == 413, shared.text
    assert shared.json()["error"]["details"] == {"max_body_bytes": 4096, "content_length": 4097}
    # TensorFlow Serving's route answers in TensorFlow Serving's shape.
    tf_shaped = service.client.post(f"/v1/models/{NAME}:predict", content=oversized, headers={})
    assert tf_shaped.status_code == 413, tf_shaped.text
    assert tf_shaped.json() == {"error": "request body is larger than 4096 bytes"}
    chunked = service.client.post("/v1/predict", content=iter([b"y" * 1024] * 8), headers={})
    assert chunked.status_code == 413, chunked.text
    # None reached the router, so no key check and no handler ran.
    assert routed_413s("<unmatched>") == unmatched + 3
    assert routed_413s("/v1/predict") == routed


def test_bad_requests_are_4xx_naming_the_problem(service: Service) -> None:
    too_big = service.client.post(
        "/v1/predict", json={"instances": [{"text": "x" * 5000}]}, headers=AUTH
    )
    assert (
        too_big.status_code == 413 and too_big.json()["error"]["details"]["max_body_bytes"] == 4096
    )
    too_many = service.predict(*["a"] * 21)
    assert too_many.status_code == 413 and "the limit is 20" in too_many.json()["error"]["message"]
    empty = service.client.post("/v1/predict", json={"instances": []}, headers=AUTH)
    assert empty.status_code == 422 and "body.instances" in empty.json()["error"]["message"]
    typed = service.client.post("/v1/predict", json={"instances": [{"text": 7}]}, headers=AUTH)
    assert typed.status_code == 422 and "body.instances.0.text" in typed.json()["error"]["message"]
    unknown = service.client.post(
        "/v1/predict",
        json={"instances": [{"text": "hi", "metadata": {"year": 2001, "colour": "red"}}]},
        headers=AUTH,
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["details"]["unknown_fields"] == ["colour"]
    malformed = service.client.post("/v1/predict", content=b"{nope", headers=AUTH)
    assert malformed.status_code == 400


def test_metrics_are_per_model_version(service: Service) -> None:
    service.predict(unique("hello"))
    text = service.client.get("/metrics").text
    assert metric(text, "mlcycle_inference_requests_total", model_version="1", source="api") > 0
    for name in (
        "mlcycle_inference_request_seconds_bucket",
        "mlcycle_inference_featurize_seconds_bucket",
        "mlcycle_inference_predict_rpc_seconds_bucket",
        "mlcycle_inference_score_bucket",
    ):
        assert f'{name}{{le="0.00025",model_version="1"' in text or (
            f'{name}{{le="0.05",model_version="1"' in text
        ), name
    assert metric(text, "mlcycle_inference_cache_misses_total", model_version="1") > 0
    assert metric(text, "mlcycle_inference_serving_version", model=NAME) == 1.0
    ready = service.client.get("/readyz").json()
    assert ready == {
        "status": "ready",
        "checks": {"model_server": True, "model": True, "redis": True},
    }


def test_the_predict_command(service: Service) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return mlcycle_command("predict", *args)

    texts = [unique("you idiot"), unique("thanks a lot")]
    table = run(*texts, "--url", service.url, "--api-key", KEY)
    assert table.returncode == 0, table.stderr
    assert texts[0].split()[-1] in table.stdout and "model version" in table.stdout
    as_json = run(*texts, "--url", service.url, "--api-key", KEY, "--json", "--explain")
    assert as_json.returncode == 0, as_json.stderr
    predictions = json.loads(as_json.stdout)["predictions"]
    assert [p["model_version"] for p in predictions] == [1, 1]
    assert f"{predictions[0]['score']:.4f}" in table.stdout
    assert [span["text"] for span in predictions[0]["spans"]] == texts[0].split()
    refused = run("hello", "--url", service.url, "--api-key", "wrong")
    assert (
        refused.returncode == 2 and "401" in refused.stderr and "invalid API key" in refused.stderr
    )
    down = run("hello", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2 and "cannot reach the inference service" in down.stderr


# -- rate limits ------------------------------------------------------------------------------


def test_each_key_is_rate_limited_on_its_own(shared_world: World) -> None:
    settings = shared_world.settings(
        api_keys=(KEY, OTHER_KEY), rate_limit_rps=0.5, rate_limit_burst=2
    )
    service = Service(settings)
    try:
        assert [service.predict("hi").status_code for _ in range(2)] == [200, 200]
        limited = service.predict("hi")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2"
        assert limited.json()["error"]["code"] == "too_many_requests"
        other = {"Authorization": f"Bearer {OTHER_KEY}"}
        assert service.predict("hi", headers=other).status_code == 200
        tf_limited = service.client.post(
            f"/v1/models/{NAME}:predict", json={"instances": ["hi"]}, headers=AUTH
        )
        assert tf_limited.status_code == 429 and "rate limit" in tf_limited.json()["error"]
    finally:
        service.close()


# -- explanations -------------------------------------------------------------------------------


def direct_spans(world: World, service: Service, text: str) -> list[dict[str, object]]:
    """``text``'s explanation by version 1 computed in-process: the SavedModel's explain
    signature on the transform's vector, split over the words."""
    from mlcycle.featurization.attribution import attribute_to_words
    from mlcycle.inference.tensors import padded_rows
    from mlcycle.trainer.export import ServingModel

    transform = service.runtime.tracker.current().transform
    batch = transform.apply([text])
    indices, values = padded_rows(batch, 0, 1)
    explained = ServingModel(world.models / NAME / "1").explain(indices, values)
    columns, _ = batch.row(0)
    words = attribute_to_words(transform, text, columns, explained.attributions[0, : len(columns)])
    return [span.model_dump() for span in words.spans()]


def test_explain_adds_the_words_of_the_text_as_sent_from_the_version_that_scored_it(
    service: Service, shared_world: World, redis_server: EmbeddedRedis
) -> None:
    from mlcycle.inference.explain import explain_key

    text = unique("You are an IDIOT &amp; a moron 😀 https://x.example/a?b=1 @someone")
    plain = service.predict(text)
    assert plain.status_code == 200 and "spans" not in plain.json()["predictions"][0]
    answer = service.predict(text, explain=True)
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    assert prediction["model_version"] == 1
    spans = prediction["spans"]
    # The emoji and the URL are words of their own, at their place in the text as sent;
    # the mention is removed by the clean-up, so it is no word.
    assert [s["text"] for s in spans][:8] == [
        "You",
        "are",
        "an",
        "IDIOT",
        "a",
        "moron",
        "😀",
        "https://x.example/a?b=1",
    ]
    assert all(text[s["begin"] : s["end"]] == s["text"] for s in spans)
    expected = direct_spans(shared_world, service, text)
    assert [(s["begin"], s["end"]) for s in spans] == [(s["begin"], s["end"]) for s in expected]
    np.testing.assert_allclose(
        [s["score"] for s in spans], [s["score"] for s in expected], rtol=1e-4, atol=1e-6
    )
    # Cached per exact text: the same text again reads it, whitespace changes make another.
    model = service.runtime.tracker.current()
    cache = redis.Redis.from_url(redis_server.url)
    assert cache.get(explain_key(model, text, None)) is not None
    assert service.predict(text, explain=True).json()["predictions"][0]["spans"] == spans
    spaced = text.replace(" ", "  ", 1)
    (again,) = service.predict(spaced, explain=True).json()["predictions"]
    assert again["score"] == prediction["score"]  # one score for both forms
    assert all(spaced[s["begin"] : s["end"]] == s["text"] for s in again["spans"])
    assert again["spans"][1]["begin"] == spans[1]["begin"] + 1  # after the doubled space


def test_explain_must_be_a_boolean_and_the_tf_shape_is_unchanged(service: Service) -> None:
    answer = service.predict("hello", explain="yes")
    assert answer.status_code == 422 and "explain" in answer.json()["error"]["message"]
    tf = service.client.post(
        f"/v1/models/{NAME}:predict", json={"instances": ["hello there"]}, headers=AUTH
    )
    assert tf.status_code == 200 and set(tf.json()["predictions"][0]) == {
        "score",
        "label",
        "threshold",
        "model_version",
        "transform_version",
    }


def analyze(service: Service, text: str, **options: object) -> httpx.Response:
    body = {"comment": {"text": text}, "requestedAttributes": {"TOXICITY": {}}, **options}
    return service.client.post("/v1alpha1/comments:analyze", json=body, headers=AUTH)


def test_perspectives_analyze_answers_the_served_score_and_its_words(
    service: Service, redis_server: EmbeddedRedis
) -> None:
    from mlcycle.inference.explain import explain_key

    text = unique("you are an idiot")
    answer = analyze(service, text, spanAnnotations=True, clientToken="t-1")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-mlcycle-model-version"] == "1"
    body = answer.json()
    assert body["clientToken"] == "t-1" and body["languages"] == ["en"]
    toxicity = body["attributeScores"]["TOXICITY"]
    (predicted,) = service.predict(text, explain=True).json()["predictions"]
    assert toxicity["summaryScore"] == {
        "value": pytest.approx(predicted["score"]),
        "type": "PROBABILITY",
    }
    # One span per word at its offsets (all ASCII here), its share clipped to [0, 1].
    words = predicted["spans"]
    assert [(s["begin"], s["end"]) for s in toxicity["spanScores"]] == [
        (s["begin"], s["end"]) for s in words
    ]
    assert [s["score"]["value"] for s in toxicity["spanScores"]] == pytest.approx(
        [min(max(s["score"], 0.0), 1.0) for s in words]
    )
    cache = redis.Redis.from_url(redis_server.url)
    assert cache.get(explain_key(service.runtime.tracker.current(), text, None)) is not None


def test_do_not_store_leaves_nothing_in_the_cache(
    service: Service, redis_server: EmbeddedRedis
) -> None:
    from mlcycle.inference.explain import explain_key

    text = unique("you are an idiot")
    model = service.runtime.tracker.current()
    for spans in (True, False):
        answer = analyze(service, text, spanAnnotations=spans, doNotStore=True)
        assert answer.status_code == 200, answer.text
        assert ("spanScores" in answer.json()["attributeScores"]["TOXICITY"]) is spans
    cache = redis.Redis.from_url(redis_server.url)
    score_key = cache_key(key_prefix(NAME, 1, model.transform_version), text, None, 5000)
    assert cache.get(score_key) is None
    assert cache.get(explain_key(model, text, None)) is None
    assert analyze(service, text).json()["attributeScores"]["TOXICITY"]["summaryScore"]["value"] > 0
    assert cache.get(score_key) is not None  # the same text without doNotStore is cached


# -- the live positive rate ------------------------------------------------------------------------


def test_the_live_positive_rate_is_the_em_estimate_over_the_served_scores(
    models_root: Path, tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    world = World(models_root, tmp_path)
    # A version whose job stated its deployment prior, as the trainer now exports it.
    metadata_path = world.models / NAME / "1" / "metadata.json"
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    metadata["threshold_policy"] = {"applied": True, "score_prior": 0.2, "threshold": 0.5}
    metadata_path.write_text(json.dumps(metadata), encoding="utf-8")
    world.start_server()
    service = Service(world.settings(redis_url=redis_server.url))
    try:
        empty = service.client.get("/v1/positive-rate").json()
        assert (empty["model_version"], empty["window"], empty["positive_rate"]) == (1, 0, None)
        assert empty["score_prior"] == 0.2 and "no scores" in empty["reason"]

        texts = [unique(t) for t in ("you idiot", "thanks for the edit", "stupid moron", "hi")]
        first = service.predict(*texts, headers={}).json()["predictions"]
        again = service.predict(texts[0], texts[2], headers={}).json()["predictions"]  # hits
        served = np.array([p["score"] for p in first + again])

        rate = service.client.get("/v1/positive-rate").json()
        assert rate["window"] == len(served) == 6  # cache hits are traffic too
        assert rate["mean_score"] == pytest.approx(served.mean())
        expected = estimate_positive_rate(served, 0.2)
        assert rate["positive_rate"] == pytest.approx(expected.positive_rate, abs=1e-9)
        assert rate["converged"] and rate["threshold"] == 0.5
        assert rate["flagged_rate"] == pytest.approx((served >= 0.5).mean())
        gauge = metric(
            service.client.get("/metrics").text,
            "mlcycle_inference_live_positive_rate",
            model_version="1",
        )
        assert gauge == pytest.approx(expected.positive_rate, abs=1e-9)

        assert service.client.get("/v1/positive-rate", params={"version": 1}).json() == rate
        missing = service.client.get("/v1/positive-rate", params={"version": 7})
        assert missing.status_code == 404 and "version 7" in missing.json()["error"]["message"]
        bad = service.client.get("/v1/positive-rate", params={"version": "x"})
        assert bad.status_code == 422
    finally:
        service.close()
        world.stop_server()


def test_a_version_without_a_score_prior_reports_no_rate(service: Service) -> None:
    service.predict(unique("hello there"))
    rate = service.client.get("/v1/positive-rate", headers=AUTH).json()
    assert rate["window"] > 0 and rate["mean_score"] is not None
    assert rate["positive_rate"] is None and "score_prior" in rate["reason"]
    assert service.client.get("/v1/positive-rate").status_code == 401


# -- versions and outages -------------------------------------------------------------------------


def test_a_new_version_answers_at_once_and_never_with_stale_scores(
    world: World, redis_server: EmbeddedRedis
) -> None:
    service = Service(world.settings(redis_url=redis_server.url))
    try:
        text = unique("you are a stupid loser")
        v1 = service.predict(text, headers={}).json()["predictions"][0]
        assert v1["model_version"] == 1
        world.add_version(2)
        wait_for(
            lambda: (
                service.predict(text, headers={}).json()["predictions"][0]["model_version"] == 2
            ),
            20,
        )
        v2 = service.predict(text, headers={}).json()["predictions"][0]
        assert v2["threshold"] == 0.4  # version 2's own dev-tuned threshold
        assert v2["score"] == pytest.approx(float(world.direct_scores(2, [text])[0]), abs=1e-5)
        assert v2["score"] != pytest.approx(v1["score"], abs=1e-4)
    finally:
        service.close()


def test_a_model_server_outage_is_a_quick_503_then_recovers(world: World) -> None:
    port = world.port
    service = Service(world.settings(predict_deadline_s=1.0, predict_retries=2))
    try:
        assert service.predict("hello", headers={}).status_code == 200
        world.stop_server()
        started = time.monotonic()
        down = service.predict(unique("hello"), headers={})
        assert time.monotonic() - started < 2.0
        assert down.status_code == 503
        assert down.headers["retry-after"] == "1"
        assert f"model server at 127.0.0.1:{port}" in down.json()["error"]["message"]
        ready = service.client.get("/readyz")
        assert ready.status_code == 503 and "model_server" in ready.json()["error"]["message"]
        tf_down = service.client.post(f"/v1/models/{NAME}:predict", json={"instances": ["a"]})
        assert tf_down.status_code == 503 and "model server" in tf_down.json()["error"]

        world.start_server(port)
        wait_for(lambda: service.predict(unique("hello"), headers={}).status_code == 200, 15)
        assert service.client.get("/readyz").status_code == 200
    finally:
        service.close()


def test_after_a_model_server_restart_readiness_and_predictions_agree(world: World) -> None:
    # Predictions and readiness reach the model server over channels of their own, and each
    # reconnects on its own schedule: once either says the server is back, so does the other.
    port = world.port
    service = Service(world.settings(predict_deadline_s=1.0, predict_retries=2))

    def predicts() -> bool:
        return service.predict(unique("hello"), headers={}).status_code == 200

    def ready() -> bool:
        return service.client.get("/readyz").status_code == 200

    try:
        assert predicts()
        for first, then in ((predicts, ready), (ready, predicts)) * 2:
            world.stop_server()
            assert not predicts()
            world.start_server(port)
            wait_for(first, 15)
            assert then(), f"{first.__name__} before {then.__name__}"
    finally:
        service.close()


def test_without_redis_predictions_go_on_and_readiness_is_degraded(
    world: World, tmp_path: Path
) -> None:
    cache = EmbeddedRedis(0, data_dir=tmp_path / "redis").start()
    port = cache.port
    service = Service(world.settings(redis_url=cache.url))
    try:
        assert service.predict("hello", headers={}).status_code == 200
        cache.stop()
        started = time.monotonic()
        for i in range(20):
            answer = service.predict(unique(f"hello {i}"), headers={})
            assert answer.status_code == 200
        assert time.monotonic() - started < 5.0
        ready = service.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "degraded",
            "checks": {"model_server": True, "model": True, "redis": False},
        }
        cache = EmbeddedRedis(port, data_dir=tmp_path / "redis").start()
        wait_for(lambda: service.client.get("/readyz").json()["status"] == "ready", 15)
    finally:
        service.close()
        cache.stop()


def test_a_version_whose_transform_is_missing_is_a_clear_503(world: World, tmp_path: Path) -> None:
    empty_store = tmp_path / "no-artifacts"
    service = Service(world.settings(artifacts_dir=empty_store))
    try:
        answer = service.predict("hello", headers={})
        assert answer.status_code == 503
        message = answer.json()["error"]["message"]
        assert "needs transform tf-" in message and "artifact store" in message
        assert service.client.get("/readyz").status_code == 503
    finally:
        service.close()


def test_scores_match_the_saved_model_for_many_texts(world: World) -> None:
    service = Service(world.settings(predict_batch_size=16))
    try:
        texts = [unique(f"comment {i} {'idiot' if i % 3 == 0 else 'thanks'}") for i in range(50)]
        answer = service.predict(*texts, headers={})
        scores = np.array([p["score"] for p in answer.json()["predictions"]])
        assert np.allclose(scores, world.direct_scores(1, texts), atol=1e-5)
    finally:
        service.close()


def test_the_api_command_serves_with_its_own_redis_and_stops_cleanly(
    shared_world: World, tmp_path: Path
) -> None:
    settings = shared_world.settings(data_dir=tmp_path, inference_port=free_port())
    env = {**os.environ, **settings_to_env(settings), "TF_CPP_MIN_LOG_LEVEL": "2"}
    base = f"http://127.0.0.1:{settings.inference.port}"
    with (tmp_path / "api.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "inference", "api"], env=env, stderr=log
        )
        try:
            wait_for(lambda: _status(f"{base}/readyz") == 200, 60)
            assert httpx.get(f"{base}/readyz").json()["checks"]["redis"] is True
            for _ in range(2):
                answer = httpx.post(f"{base}/v1/predict", json={"instances": [{"text": "hi"}]})
                assert answer.json()["predictions"][0]["model_version"] == 1
            metrics = httpx.get(f"{base}/metrics").text
            assert metric(metrics, "mlcycle_inference_cache_hits_total", model_version="1") == 1
            assert httpx.get(f"{base}/docs").status_code == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
