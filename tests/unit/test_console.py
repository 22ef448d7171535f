"""The console's routes in process: access by key and scope, CSRF, labels and undo as the
messages they send, and pages that stay up when the inference service is not.

The browser test (tests/integration/test_console_browser.py) drives the same pages in
Chromium against the real broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from mlcycle.common.settings import load_settings
from mlcycle.common.store import Store
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.label_runs import LabelIssue, RunParams
from mlcycle.contracts.repositories.label_runs import LabelIssues, LabelRuns
from mlcycle.labeler.api import create_app
from mlcycle.labeler.console.admin import refusal, trainer_url
from mlcycle.labeler.console.explain import Explainer, inference_url
from mlcycle.labeler.console.session import CSRF_COOKIE, KEY_COOKIE
from mlcycle.labeler.runs import LabelRunner
from tests.fixtures.apps import NotingWorker
from tests.fixtures.console import LABEL_KEY, READ_KEY, WordExplainer, seed_reviews

CSRF = "test-csrf-token"


class Producer:
    """Keeps what would go to Kafka."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send_batch(self, topic: str, items, timeout_s: float = 30.0) -> int:  # noqa: ANN001
        batch = [(topic, orjson.loads(value)) for _, value in items]
        self.sent += batch
        return len(batch)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = SqliteStore(tmp_path / "store.sqlite")
    seed_reviews(store, n_items=24)
    yield store
    store.close()


def _client(
    store: Store, tmp_path: Path, keys: tuple[str, ...], explainer: Explainer | None = None
) -> tuple[TestClient, Producer]:
    settings = load_settings(data_dir=tmp_path, api_keys=keys)
    producer = Producer()
    runner = LabelRunner(settings.labeler, store, producer, topic="labels")  # type: ignore[arg-type]
    runner.execute(runner.create(RunParams(strategy="majority")).id)
    app = create_app(
        settings,
        store=store,
        producer=producer,  # type: ignore[arg-type]
        worker=NotingWorker(runner, name="noted"),
        explainer=explainer or WordExplainer(),
    )
    client = TestClient(app, base_url="http://127.0.0.1")
    client.cookies.set(CSRF_COOKIE, CSRF, path="/console")
    producer.sent.clear()
    return client, producer


def _post(client: TestClient, path: str, body: dict, csrf: str | None = CSRF):  # noqa: ANN202
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    return client.post(path, json=body, headers=headers)


def _item(html: str) -> str:
    return html.split('data-item-id="', 1)[1].split('"', 1)[0]


def test_with_keys_off_anyone_labels_under_the_name_they_gave_and_undoes(
    store: Store, tmp_path: Path
) -> None:
    client, producer = _client(store, tmp_path, keys=())
    page = client.get("/console/queue")
    assert page.status_code == 200, page.text
    assert "keys off" in page.text and 'id="read-only"' not in page.text
    item = _item(page.text)
    signed = client.post(
        "/console/login", data={"csrf": CSRF, "reviewer": "mo"}, follow_redirects=False
    )
    assert signed.status_code == 303
    labeled = _post(client, "/console/labels", {"item_id": item, "label": 1, "task": "toxicity"})
    assert labeled.status_code == 202, labeled.text
    assert labeled.json()["reviewers"] == ["mo"]
    undone = _post(client, "/console/retractions", {"item_id": item, "task": "toxicity"})
    assert undone.status_code == 202, undone.text
    (vote_topic, vote), (undo_topic, retraction) = producer.sent
    assert vote_topic == undo_topic == "votes.reviewed"
    assert vote["annotator_id"] == "human:mo" and vote["label"] == 1
    assert retraction["retracts"] == f"toxicity:{item}:human:mo"


def test_a_post_without_the_csrf_token_is_refused(store: Store, tmp_path: Path) -> None:
    client, producer = _client(store, tmp_path, keys=())
    body = {"item_id": "c001", "label": 1, "task": "toxicity"}
    for csrf in (None, "another-token"):
        refused = _post(client, "/console/labels", body, csrf=csrf)
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["error"]["message"]
    assert client.post("/console/login", data={"reviewer": "mo"}).status_code == 403
    assert producer.sent == []


def test_with_keys_on_a_read_key_sees_the_queue_but_cannot_label(
    store: Store, tmp_path: Path
) -> None:
    client, producer = _client(store, tmp_path, keys=(LABEL_KEY, READ_KEY))
    anonymous = client.get("/console/queue")
    assert anonymous.status_code == 401 and 'id="key"' in anonymous.text
    wrong = client.post("/console/login", data={"csrf": CSRF, "key": "nope"})
    assert wrong.status_code == 401 and "not a valid API key" in wrong.text

    client.post("/console/login", data={"csrf": CSRF, "key": "reed-secret"})
    assert client.cookies.get(KEY_COOKIE) == "reed-secret"
    page = client.get("/console/queue")
    assert page.status_code == 200 and 'id="read-only"' in page.text
    refused = _post(
        client, "/console/labels", {"item_id": _item(page.text), "label": 1, "task": "toxicity"}
    )
    assert refused.status_code == 403
    assert "'label'" in refused.json()["error"]["message"]
    assert (
        _post(client, "/console/retractions", {"item_id": "c001", "task": "toxicity"}).status_code
        == 403
    )
    assert producer.sent == []

    client.post("/console/login", data={"csrf": CSRF, "key": "rita-secret"})
    accepted = _post(client, "/console/labels", {"item_id": "c001", "label": 0, "task": "toxicity"})
    assert accepted.status_code == 202 and accepted.json()["reviewers"] == ["rita"]
    assert producer.sent[0][1]["annotator_id"] == "human:rita"
    bad = _post(client, "/console/labels", {"item_id": "c001", "label": 7, "task": "toxicity"})
    assert bad.status_code == 400 and "not a class" in bad.json()["error"]["message"]


def test_the_queue_shows_text_plain_when_inference_is_unreachable(
    store: Store, tmp_path: Path
) -> None:
    client, _ = _client(
        store, tmp_path, keys=(), explainer=Explainer("http://127.0.0.1:9", timeout_s=0.5)
    )
    page = client.get("/console/queue")
    assert page.status_code == 200
    assert "Explanations are unavailable: the inference service is unreachable." in page.text
    assert "<mark" not in page.text.split('id="comment-text"', 1)[1].split("</blockquote>")[0]
    monitoring = client.get("/console/monitoring")
    assert monitoring.status_code == 200 and "cannot be read" in monitoring.text


def test_the_words_behind_the_score_are_marked_and_filters_narrow_the_queue(
    store: Store, tmp_path: Path
) -> None:
    client, _ = _client(store, tmp_path, keys=())
    first = client.get("/console/queue")
    item = _item(first.text)
    following = client.get("/console/queue/card", params={"skip": [item]})
    assert following.status_code == 200 and _item(following.text) != item
    again = client.get("/console/queue/card", params={"item": item})
    assert _item(again.text) == item
    marked = [
        client.get("/console/queue/card", params={"item": f"c{i:03d}"}).text for i in range(7)
    ]
    assert any('<mark class="towards"' in html for html in marked)
    empty = client.get("/console/queue", params={"reason": "disagrees_with_moderators"})
    assert 'data-empty="true"' in empty.text
    test_split = client.get("/console/queue", params={"split": "test"})
    assert 'data-empty="true"' in test_split.text or "test ·" in test_split.text


def test_the_read_only_pages_and_assets(store: Store, tmp_path: Path) -> None:
    client, _ = _client(store, tmp_path, keys=(LABEL_KEY, READ_KEY))
    assert client.get("/console/runs").status_code == 401
    client.post("/console/login", data={"csrf": CSRF, "key": "reed-secret"})
    runs = client.get("/console/runs")
    assert runs.status_code == 200
    report_link = runs.text.split('href="/console/runs/', 1)[1].split('"', 1)[0]
    report = client.get(f"/console/runs/{report_link}")
    assert report.status_code == 200 and "<h1>Label run" in report.text
    assert client.get("/console/models").status_code == 200
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/console/static/../api.py").status_code == 404
    assert client.get("/console/static/secrets.txt").status_code == 404
    assert "/console" not in str(client.get("/openapi.json").json()["paths"])


def test_a_suspected_label_says_what_the_run_suspects(store: Store, tmp_path: Path) -> None:
    client, _ = _client(store, tmp_path, keys=())
    runs = LabelRuns(store)
    run = runs.latest("toxicity")
    assert run is not None and run.review_queue
    entry = run.review_queue[0]
    run.review_queue = [entry.model_copy(update={"reasons": ["suspected_error"]})]
    runs.save(run)
    suggested = 1 - entry.label
    LabelIssues(store).save(
        LabelIssue(
            id=LabelIssue.id_of(run.id, 0),
            run=run.id,
            rank=0,
            item_id=entry.item_id,
            given_label=entry.label,
            suggested_label=suggested,
            quality=0.12,
            probability=0.2,
            probabilities=[0.2, 0.8] if suggested == 1 else [0.8, 0.2],
        )
    )
    card = client.get("/console/queue/card", params={"reason": "suspected_error"}).text
    assert _item(card) == entry.item_id
    assert 'id="suspicion"' in card and "label quality 0.12" in card
    assert "suspected error" in card


def test_the_trainer_is_dialed_where_it_listens_and_its_answers_become_sentences() -> None:
    assert trainer_url(load_settings(host="0.0.0.0", trainer_port=9004)) == "http://127.0.0.1:9004"
    assert trainer_url(load_settings(host="::1", trainer_port=9004)) == "http://[::1]:9004"
    # Where the services run apart (compose, Kubernetes) the peers are configured.
    apart = load_settings(trainer_url="http://trainer:8004/", inference_url="http://inference:8000")
    assert trainer_url(apart) == "http://trainer:8004"
    assert inference_url(apart) == "http://inference:8000"
    shaped = httpx.Response(409, json={"error": {"code": "conflict", "message": "is over"}})
    assert refusal(shaped) == "The trainer refused (409): is over"
    proxy = httpx.Response(502, text="<html>bad gateway</html>")
    assert refusal(proxy) == "The trainer failed (502): <html>bad gateway</html>"
