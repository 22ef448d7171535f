"""The collector's REST API over real HTTP, with the real broker and a real SQLite store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from mlcycle.clients.collector import CollectorClient
from mlcycle.collector.api import create_app
from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.broker import EmbeddedBroker
from mlcycle.common.kafka.admin import ensure_topics
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings, settings_to_env
from mlcycle.common.store import COMMENTS, Store, open_store
from tests.fixtures.broker import broker_settings, indexer_thread, read_all

pytestmark = pytest.mark.integration

MAX_BODY = 64 * 1024
MAX_RECORDS = 20
API_KEY = "s3cret-key"
INGEST_SECRET, READ_SECRET = "feeder-secret", "dashboard-secret"


@dataclass
class Collector:
    """A running collector: its base URL, settings and backends."""

    url: str
    settings: Settings
    store: Store

    def post(self, path: str, content: bytes | Iterator[bytes], **kwargs: object) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", content=content, timeout=30, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]


def _start(settings: Settings, tmp: Path) -> Iterator[Collector]:
    ensure_topics(settings.kafka)
    store = open_store(settings.replace(sqlite_path=tmp / "store.sqlite3").store)
    producer = RecordProducer(settings.kafka, client_id="test-collector")
    server = BackgroundServer(create_app(settings, store=store, producer=producer), "127.0.0.1", 0)
    server.start()
    try:
        yield Collector(f"http://127.0.0.1:{server.port}", settings, store)
    finally:
        server.stop()
        producer.close()
        store.close()


@pytest.fixture(scope="module")
def module_settings(kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory):
    """This module's own topics on the session broker (one server per module keeps it fast)."""
    return broker_settings(kafka_broker.bootstrap, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def collector(module_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    settings = module_settings.replace(max_body_bytes=MAX_BODY, max_batch_records=MAX_RECORDS)
    yield from _start(settings, tmp_path_factory.mktemp("collector"))


@pytest.fixture(scope="module")
def secured(module_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    keys = (API_KEY, "other-key", f"feeder:ingest:{INGEST_SECRET}", f"dashboard:read:{READ_SECRET}")
    settings = module_settings.replace(api_keys=keys)
    yield from _start(settings, tmp_path_factory.mktemp("secured"))


def error_of(response: httpx.Response) -> dict:
    """The ``error`` object of an error response (and a check of the shared shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


# -- ingest -------------------------------------------------------------------------------------


def test_accepted_comments_are_in_the_topic_keyed_by_id(collector: Collector) -> None:
    batch = [
        {"id": "c-1", "text": "first", "metadata": {"year": 2015, "logged_in": True}},
        {"id": "c-2", "text": "second", "source": "wiki", "created_at": "2015-03-01T10:00:00Z"},
    ]
    response = collector.post("/v1/comments", orjson.dumps(batch))
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2}
    assert "produce;dur=" in response.headers["server-timing"]

    records = read_all(collector.settings, collector.settings.kafka.topics.comments_raw, 2)
    by_key = {r.key.decode(): orjson.loads(r.value) for r in records}
    assert by_key["c-1"]["text"] == "first"
    assert by_key["c-1"]["metadata"] == {"year": 2015, "logged_in": True}
    assert by_key["c-2"]["created_at"] == "2015-03-01T10:00:00Z"
    assert by_key["c-2"]["source"] == "wiki"


def test_ndjson_and_single_object_bodies(collector: Collector) -> None:
    ndjson = b'{"id": "n-1", "text": "a"}\n\n{"id": "n-2", "text": "b"}\n'
    for content_type in ("application/x-ndjson", "application/jsonl", None):
        headers = {"content-type": content_type} if content_type else {}
        response = collector.post("/v1/comments", ndjson, headers=headers)
        assert response.status_code == 202, (content_type, response.text)
        assert response.json() == {"accepted": 2}
    pretty = b'{\n  "id": "single-1",\n  "text": "one object"\n}\n'
    response = collector.post("/v1/comments", pretty, headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1}


def test_votes_are_keyed_by_item(collector: Collector) -> None:
    votes = [
        {"item_id": "v-item", "annotator_id": "w1", "label": 1},
        {"item_id": "v-item", "annotator_id": "w2", "label": 0.25, "task": "toxicity"},
    ]
    response = collector.post("/v1/votes", orjson.dumps(votes))
    assert response.status_code == 202, response.text
    records = read_all(collector.settings, collector.settings.kafka.topics.votes_raw, 2)
    mine = [r for r in records if r.key == b"v-item"]
    assert sorted(orjson.loads(r.value)["annotator_id"] for r in mine) == ["w1", "w2"]
    assert len({r.partition for r in mine}) == 1


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        (b'[{"id": "x", "text": "a"', 400, "invalid_input", "malformed JSON at line 1"),
        (b'{"id": "a", "text": "x"}\n{"id": "b", text}\n', 400, "invalid_input", "line 2"),
        (b"", 400, "invalid_input", "empty"),
        (b"   \n ", 400, "invalid_input", "empty"),
        (b"[]", 422, "validation_failed", "empty"),
        (b'"just a string"', 400, "invalid_input", "JSON array"),
        (b'[{"id": "ok", "text": "caf\xc3\xa9 \xff"}]', 400, "invalid_input", "byte offset 29"),
    ],
    ids=["truncated", "ndjson-line-2", "empty-body", "blank-body", "empty-array", "string", "utf8"],
)
def test_unreadable_bodies_are_4xx_with_a_clear_error(
    collector: Collector, body: bytes, status: int, code: str, needle: str
) -> None:
    response = collector.post("/v1/comments", body)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    assert needle in error["message"], error


def test_malformed_json_error_names_line_and_column(collector: Collector) -> None:
    body = b'{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n{"id": "c" "text": "z"}\n'
    error = error_of(collector.post("/v1/comments", body))
    assert error["details"]["line"] == 3
    assert error["details"]["column"] == 12


@pytest.mark.parametrize(
    ("record", "field", "needle"),
    [
        ({"text": "no id"}, "id", "Field required"),
        ({"id": "no-text"}, "text", "Field required"),
        ({"id": 123, "text": "numeric id"}, "id", "valid string"),
        ({"id": "list-text", "text": ["a", "b"]}, "text", "valid string"),
        ({"id": "", "text": "empty id"}, "id", "at least 1"),
        ({"id": "x", "text": "y", "label": "toxic"}, "label", "Extra inputs"),
    ],
    ids=["missing-id", "missing-text", "numeric-id", "list-text", "empty-id", "unknown-field"],
)
def test_invalid_comment_rejects_the_whole_batch(
    collector: Collector, record: dict, field: str, needle: str
) -> None:
    batch = [{"id": "good-before", "text": "fine"}, record, {"id": "good-after", "text": "ok"}]
    response = collector.post("/v1/comments", orjson.dumps(batch))
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_failed"
    assert "no record was accepted" in error["message"]
    (problem,) = error["details"]["errors"]
    assert problem["index"] == 1
    assert problem["field"] == field
    assert needle in problem["message"]


def test_invalid_votes_list_every_error_with_its_index(collector: Collector) -> None:
    votes = [
        {"item_id": "i", "annotator_id": "w", "label": "toxic"},
        {"item_id": "i", "annotator_id": "w", "label": 1},
        {"annotator_id": "w", "label": 1},
    ]
    error = error_of(collector.post("/v1/votes", orjson.dumps(votes)))
    indexes = {(e["index"], e["field"].split(".")[0]) for e in error["details"]["errors"]}
    assert indexes == {(0, "label"), (2, "item_id")}
    assert error["details"]["error_count"] == len(error["details"]["errors"])


def test_reserved_voter_kinds_are_refused_naming_the_field(collector: Collector) -> None:
    topic = collector.settings.kafka.topics.votes_raw
    before = len(read_all(collector.settings, topic))
    votes = [
        {"item_id": "i", "annotator_id": "human:mallory", "label": 1},
        {"item_id": "i", "annotator_id": "lf:made_up", "label": 0},
        {"item_id": "i", "annotator_id": "crowd-worker-7", "label": 1},
    ]
    response = collector.post("/v1/votes", orjson.dumps(votes))
    assert response.status_code == 422, response.text
    errors = error_of(response)["details"]["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [(0, "annotator_id"), (1, "annotator_id")]
    assert all("reserved for the labeler's reviewers" in e["message"] for e in errors)
    assert len(read_all(collector.settings, topic)) == before  # all or nothing: none produced


def test_ids_are_bounded_in_utf8_bytes(collector: Collector) -> None:
    # 300 characters, within any character limit, but 600 bytes in UTF-8.
    too_long = {"id": "é" * 300, "text": "x"}
    response = collector.post("/v1/comments", orjson.dumps([too_long]))
    assert response.status_code == 422, response.text
    (error,) = error_of(response)["details"]["errors"]
    assert error["field"] == "id"
    assert "at most 512 bytes in UTF-8, this one is 600" in error["message"]
    vote = {"item_id": "i", "annotator_id": "é" * 257, "label": 1}
    (error,) = error_of(collector.post("/v1/votes", orjson.dumps([vote])))["details"]["errors"]
    assert error["field"] == "annotator_id"
    at_the_limit = {"id": "é" * 256, "text": "512 bytes exactly"}
    assert collector.post("/v1/comments", orjson.dumps([at_the_limit])).status_code == 202


def test_rejected_batch_produces_nothing(collector: Collector) -> None:
    topic = collector.settings.kafka.topics.comments_raw
    marker = [{"id": "before-reject", "text": "ok"}]
    assert collector.post("/v1/comments", orjson.dumps(marker)).status_code == 202
    before = read_all(collector.settings, topic)
    assert any(r.key == b"before-reject" for r in before)
    batch = [{"id": "never-1", "text": "ok"}, {"id": "never-2"}]
    assert collector.post("/v1/comments", orjson.dumps(batch)).status_code == 422
    after = read_all(collector.settings, topic)
    assert len(after) == len(before)
    assert not [r for r in after if r.key in (b"never-1", b"never-2")]


def test_too_many_records_is_413(collector: Collector) -> None:
    batch = [{"id": f"many-{i}", "text": "x"} for i in range(MAX_RECORDS + 1)]
    response = collector.post("/v1/comments", orjson.dumps(batch))
    assert response.status_code == 413, response.text
    error = error_of(response)
    assert error["details"] == {"records": MAX_RECORDS + 1, "max_batch_records": MAX_RECORDS}


def test_body_over_the_limit_is_413_by_content_length(collector: Collector) -> None:
    body = orjson.dumps([{"id": "big", "text": "x" * MAX_BODY}])
    response = collector.post("/v1/comments", body)
    assert response.status_code == 413, response.text
    error = error_of(response)
    assert error["details"]["content_length"] == len(body)
    assert error["details"]["max_body_bytes"] == MAX_BODY


def test_chunked_body_over_the_limit_is_413(collector: Collector) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'[{"id": "chunked", "text": "'
        for _ in range(2 * MAX_BODY // 4096):
            sent += 4096
            yield b"y" * 4096
        yield b'"}]'

    response = collector.post("/v1/comments", chunks())
    assert response.status_code == 413, response.text
    assert error_of(response)["code"] == "payload_too_large"
    assert "content_length" not in error_of(response)["details"]


def test_chunked_body_under_the_limit_is_accepted(collector: Collector) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'[{"id": "chunked-ok", '
        yield b'"text": "fine"}]'

    response = collector.post("/v1/comments", chunks())
    assert response.status_code == 202, response.text


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}],
    ids=["missing", "wrong-key", "wrong-scheme"],
)
def test_writes_need_a_key(secured: Collector, headers: dict) -> None:
    for path in ("/v1/comments", "/v1/votes"):
        response = secured.post(path, b'[{"id": "a", "text": "b"}]', headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert error_of(response)["code"] == "unauthenticated"


def test_right_key_is_accepted_and_reads_need_a_key_too(secured: Collector) -> None:
    for key in (API_KEY, "other-key"):
        response = secured.post(
            "/v1/comments",
            b'[{"id": "auth-ok", "text": "b"}]',
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 202, response.text
    for path in ("/v1/stats", "/v1/comments"):
        assert secured.get(path).status_code == 401
        assert secured.get(path, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert secured.get("/healthz").status_code == 200


def test_an_ingest_key_cannot_read_and_a_read_key_cannot_ingest(secured: Collector) -> None:
    ingest = {"Authorization": f"Bearer {INGEST_SECRET}"}
    read = {"Authorization": f"Bearer {READ_SECRET}"}
    accepted = secured.post(
        "/v1/votes", b'[{"item_id": "a", "annotator_id": "w", "label": 1}]', headers=ingest
    )
    assert accepted.status_code == 202, accepted.text
    refused = secured.get("/v1/comments", headers=ingest)
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "forbidden"
    assert "'read'" in error_of(refused)["message"]
    assert secured.get("/v1/comments", headers=read).status_code == 200
    written = secured.post("/v1/comments", b'[{"id": "r", "text": "b"}]', headers=read)
    assert written.status_code == 403
    assert error_of(written)["details"] == {
        "key": "dashboard",
        "required_scope": "ingest",
        "scopes": ["read"],
    }


# -- queries ------------------------------------------------------------------------------------


def test_get_by_id_and_404(collector: Collector) -> None:
    doc = {"id": "q/1", "text": "hello", "source": None, "created_at": None, "metadata": {"a": 1}}
    collector.store.upsert(COMMENTS, [doc])
    response = collector.get("/v1/comments/q/1")
    assert response.status_code == 200, response.text
    assert response.json() == doc
    missing = collector.get("/v1/comments/no-such-id")
    assert missing.status_code == 404
    assert error_of(missing) == {
        "code": "not_found",
        "message": "no comment with id 'no-such-id'",
        "details": {"id": "no-such-id"},
    }


def test_the_client_reads_comments_the_scoring_stream_has_scored(collector: Collector) -> None:
    """A scored comment carries the stream's ``prediction``: the client keeps it, not refuses it."""
    prediction = {"score": 0.93, "label": "1", "model_version": 1}
    doc = {"id": "scored-1", "text": "scored text zyxw", "source": "unit", "metadata": {}}
    collector.store.upsert(COMMENTS, [{**doc, "prediction": prediction}])
    with CollectorClient(collector.url) as client:
        (found,) = client.search("zyxw").items
        one = client.comment("scored-1")
    for comment in (found, one):
        assert (comment.id, comment.text) == ("scored-1", "scored text zyxw")
        assert comment.model_extra == {"prediction": prediction}


def test_search_pages_with_cursor_visit_every_match_once(collector: Collector) -> None:
    docs = [{"id": f"page-{i:02d}", "text": f"pagination zebra {i}"} for i in range(7)]
    collector.store.upsert(COMMENTS, docs)
    collector.store.refresh()
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"q": "zebra", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = collector.get("/v1/comments", params=params).json()
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [d["id"] for d in docs]
    assert len(seen) == len(set(seen))


def test_search_filters_by_source(collector: Collector) -> None:
    collector.store.upsert(
        COMMENTS,
        [
            {"id": "src-1", "text": "walrus", "source": "wikipedia"},
            {"id": "src-2", "text": "walrus", "source": "twitter"},
        ],
    )
    collector.store.refresh()
    page = collector.get("/v1/comments", params={"q": "walrus", "source": "twitter"}).json()
    assert [item["id"] for item in page["items"]] == ["src-2"]


def test_search_limits_and_bad_cursor(collector: Collector) -> None:
    too_big = collector.get("/v1/comments", params={"limit": 10_000})
    assert too_big.status_code == 422
    assert error_of(too_big)["details"]["errors"][0]["field"] == "query.limit"
    assert collector.get("/v1/comments", params={"limit": 0}).status_code == 422
    bad = collector.get("/v1/comments", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400
    assert "cursor" in error_of(bad)["message"]


def test_stats_counts_per_collection(collector: Collector) -> None:
    collector.store.upsert(COMMENTS, [{"id": "stats-1", "text": "s"}])
    counts = collector.get("/v1/stats").json()["counts"]
    assert counts["comments"] == collector.store.count(COMMENTS) >= 1
    assert set(counts) >= {"comments", "votes", "labels"}


def test_unknown_route_and_method_use_the_error_shape(collector: Collector) -> None:
    assert error_of(collector.get("/v1/nothing-here"))["code"] == "not_found"
    response = httpx.delete(f"{collector.url}/v1/stats")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_health_ready_and_metrics(collector: Collector) -> None:
    assert collector.get("/healthz").json() == {"status": "ok"}
    ready = collector.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"store": True, "broker": True}
    collector.get("/v1/comments/metrics-probe-id")
    metrics = collector.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'route="/v1/comments/{comment_id}"' in metrics.text
    assert "metrics-probe-id" not in metrics.text  # raw paths never become labels


def test_openapi_documents_bodies_and_errors(collector: Collector) -> None:
    spec = collector.get("/openapi.json").json()
    post = spec["paths"]["/v1/comments"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    for status in ("400", "401", "413", "422"):
        ref = post["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody")
    assert {"Comment", "Vote", "ErrorBody"} <= set(spec["components"]["schemas"])
    assert collector.get("/docs").status_code == 200


class BrokenStatsStore:
    """A real store whose stats() fails the way a bug would: with internals in the message."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def stats(self) -> dict[str, int]:
        raise RuntimeError("secret table layout /var/lib/internal")


def test_unexpected_error_is_500_without_internals(collector: Collector) -> None:
    producer = RecordProducer(collector.settings.kafka, client_id="test-broken")
    app = create_app(collector.settings, store=BrokenStatsStore(collector.store), producer=producer)
    server = BackgroundServer(app, "127.0.0.1", 0).start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.port}/v1/stats")
    finally:
        server.stop()
        producer.close()
    assert response.status_code == 500
    assert error_of(response) == {
        "code": "internal",
        "message": "internal server error",
        "details": None,
    }
    assert "secret" not in response.text


def test_readyz_names_the_unreachable_broker(collector: Collector) -> None:
    producer = RecordProducer(collector.settings.kafka, client_id="test-unready")
    unreachable = collector.settings.replace(kafka_bootstrap=f"127.0.0.1:{_free_port()}")
    app = create_app(unreachable, store=collector.store, producer=producer)
    server = BackgroundServer(app, "127.0.0.1", 0).start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.port}/readyz", timeout=30)
    finally:
        server.stop()
        producer.close()
    assert response.status_code == 503
    error = error_of(response)
    assert error["message"] == "not ready: broker"
    assert error["details"]["checks"] == {"store": True, "broker": False}


# -- the whole flow -----------------------------------------------------------------------------


def test_accepted_comment_becomes_readable_after_indexing(collector: Collector) -> None:
    settings = collector.settings.replace(indexer_group_id="test-api-flow")
    indexer = indexer_thread(settings, collector.store)
    try:
        batch = [{"id": "flow-1", "text": "end to end"}, {"id": "flow-2", "text": "again"}]
        assert collector.post("/v1/comments", orjson.dumps(batch)).status_code == 202
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = collector.get("/v1/comments/flow-2")
            if response.status_code == 200:
                break
            time.sleep(0.2)
        assert response.status_code == 200, response.text
        assert response.json()["text"] == "again"
    finally:
        indexer.stop()


# -- the real process ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_serves_the_api_and_stops_cleanly_on_sigterm(
    module_settings: Settings, tmp_path: Path
) -> None:
    settings = module_settings.replace(collector_port=_free_port(), data_dir=tmp_path)
    env = {**os.environ, **settings_to_env(settings)}
    with (tmp_path / "collector.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "collector", "api"], env=env, stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{settings.collector.port}"
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            assert proc.poll() is None, (tmp_path / "collector.log").read_text()
            body = b'[{"id": "from-cli", "text": "served by the real process"}]'
            assert httpx.post(f"{base}/v1/comments", content=body).status_code == 202
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
