"""Perspective's ``POST /v1alpha1/comments:analyze``: the request and response corpus, and errors.

The corpus (``tests/data/perspective/requests.jsonl``) is written from Perspective's
public API reference: each case is a request body (or a raw body), the status it
gets, and either the whole answer expected or the error's status, a fragment of
its message and its ``errorType``; ``analyze`` says how the route must call the
analysis (``spans``, ``store``), or null when it must not call it. The cases run
through the real route on an app built as the inference service builds its edge,
over a fake analysis that answers each case's ``analysis`` and records its calls.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import httpx
import pytest
from fastapi import FastAPI

from mlcycle.common.errors import Unavailable
from mlcycle.common.http import RouteAccess, install_edge
from mlcycle.common.keys import KeyRing
from mlcycle.common.settings.sections import InferenceSettings
from mlcycle.contracts.access import route_scopes
from mlcycle.contracts.explanations import Span
from mlcycle.contracts.perspective import AnalyzeCommentResponse, PerspectiveErrorBody
from mlcycle.inference import perspective_request
from mlcycle.inference.access import CallerGate
from mlcycle.inference.perspective import (
    MODEL_VERSION_HEADER,
    PATH,
    Analysis,
    Analyze,
    add_perspective_route,
    render,
    utf16_offsets,
)

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).resolve().parents[1] / "data" / "perspective" / "requests.jsonl"
CASES = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]
MAX_BODY = 16 * 1024
MODEL_VERSION = 7
PREDICT, READ = "predict-secret", "read-secret"
KEYS = KeyRing.from_entries([f"moderation:predict:{PREDICT}", f"dashboard:read:{READ}"])


@dataclass
class FakeAnalysis:
    """An :class:`Analyze` answering a fixed score (and word shares), recording each call."""

    score: float = 0.91
    shares: list[list[float]] = field(default_factory=list)  # [begin, end, share] per word
    calls: list[dict[str, Any]] = field(default_factory=list)
    fails_with: Exception | None = None

    async def __call__(self, text: str, *, spans: bool, store: bool) -> Analysis:
        self.calls.append({"text": text, "spans": spans, "store": store})
        if self.fails_with is not None:
            raise self.fails_with
        words = [
            Span(begin=int(b), end=int(e), text=text[int(b) : int(e)], score=s)
            for b, e, s in self.shares
        ]
        return Analysis(
            score=self.score, spans=words if spans else None, model_version=MODEL_VERSION
        )


def build(
    analyze: Analyze, *, keys: KeyRing | None = None, rate_limit_rps: float = 0.0
) -> FastAPI:
    """The route on an app with the inference service's edge (body limit, error handlers)."""
    app = FastAPI()
    install_edge(app, service="inference", max_body_bytes=MAX_BODY, render=render)
    access = RouteAccess(keys or KeyRing.from_entries([]), route_scopes("inference"))
    config = InferenceSettings(rate_limit_rps=rate_limit_rps, rate_limit_burst=1)
    add_perspective_route(app, analyze, CallerGate(access, config), max_body_bytes=MAX_BODY)
    return app


def post(
    app: FastAPI,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    url: str = PATH,
) -> httpx.Response:
    if content is None:
        content = json.dumps(body).encode()
    sent = {"content-type": "application/json", **(headers or {})}

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://inference") as client:
            return await client.post(url, content=content, headers=sent)

    return asyncio.run(go())


def assert_google_error(response: httpx.Response, code: int, status: str) -> dict[str, Any]:
    """The body is Google's error shape with ``code`` and ``status``; returns its error."""
    assert response.status_code == code, response.text
    error = PerspectiveErrorBody.model_validate(response.json()).error
    assert (error.code, error.status) == (code, status)
    answered = response.json()["error"]
    assert [detail["@type"] for detail in answered["details"]] == [
        detail.type_url for detail in error.details
    ]
    return answered


@pytest.mark.parametrize("case", CASES, ids=[case["case"] for case in CASES])
def test_the_corpus(case: dict[str, Any]) -> None:
    analysis = case.get("analysis", {})
    fake = FakeAnalysis(score=analysis.get("score", 0.91), shares=analysis.get("spans", []))
    app = build(fake)
    if "raw" in case:
        response = post(app, content=case["raw"].encode())
    else:
        response = post(app, case["body"])
    assert response.status_code == case["status"], response.text
    if case["status"] == 200:
        assert response.json() == case["response"]
        AnalyzeCommentResponse.model_validate(response.json())  # the documented shape
    else:
        error = assert_google_error(response, case["status"], case["error"]["status"])
        assert case["error"]["message"] in error["message"]
        if "errorType" in case["error"]:
            assert error["details"][0]["errorType"] == case["error"]["errorType"]
    expected = case["analyze"]
    if expected is None:
        assert fake.calls == []
    else:
        assert len(fake.calls) == 1
        call = fake.calls[0]
        assert (call["spans"], call["store"]) == (expected["spans"], expected["store"])
        assert call["text"] == case["body"]["comment"]["text"]
        assert response.headers[MODEL_VERSION_HEADER] == str(MODEL_VERSION)


# What the corpus must keep covering, each named by at least one case.
TOPICS = (
    "minimal",
    "scoreType",
    "scoreThreshold below",
    "scoreThreshold above",
    "spanAnnotations true",
    "spanAnnotations false",
    "languages en",
    "unsupported language",
    "does not serve",
    "doNotStore",
    "clientToken",
    "sessionId",
    "comment.text missing",
    "not a string",
    "requestedAttributes empty",
    "malformed JSON",
    "unknown top-level field",
)


def test_the_corpus_covers_the_documented_cases() -> None:
    names = " ".join(case["case"] for case in CASES)
    assert [topic for topic in TOPICS if topic not in names] == []


def test_an_unsupported_language_names_the_attribute_and_the_languages() -> None:
    body = {
        "comment": {"text": "hola"},
        "requestedAttributes": {"TOXICITY": {}},
        "languages": ["es"],
    }
    error = assert_google_error(post(build(FakeAnalysis()), body), 400, "INVALID_ARGUMENT")
    detail = error["details"][0]
    assert detail["@type"] == "type.googleapis.com/google.commentanalyzer.v1alpha1.Error"
    assert detail["languageNotSupportedByAttributeError"] == {
        "attribute": "TOXICITY",
        "requestedLanguages": ["es"],
    }


def test_an_oversize_body_is_413_in_googles_shape() -> None:
    body = {"comment": {"text": "x" * MAX_BODY}, "requestedAttributes": {"TOXICITY": {}}}
    fake = FakeAnalysis()
    error = assert_google_error(post(build(fake), body), 413, "RESOURCE_EXHAUSTED")
    assert str(MAX_BODY) in error["message"]
    assert error["details"][0]["metadata"]["max_body_bytes"] == str(MAX_BODY)
    assert fake.calls == []


def test_a_text_over_the_limit_is_comment_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perspective_request, "MAX_TEXT_CHARS", 10)
    body = {"comment": {"text": "x" * 11}, "requestedAttributes": {"TOXICITY": {}}}
    error = assert_google_error(post(build(FakeAnalysis()), body), 400, "INVALID_ARGUMENT")
    assert "Comment text too long" in error["message"]
    assert error["details"][0]["errorType"] == "COMMENT_TOO_LONG"


MINIMAL = {"comment": {"text": "you idiot"}, "requestedAttributes": {"TOXICITY": {}}}


def test_keys_where_perspectives_clients_send_them() -> None:
    app = build(FakeAnalysis(), keys=KEYS)
    anonymous = post(app, MINIMAL)
    assert_google_error(anonymous, 401, "UNAUTHENTICATED")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert post(app, MINIMAL, url=f"{PATH}?key={PREDICT}").status_code == 200
    assert post(app, MINIMAL, headers={"X-Goog-Api-Key": PREDICT}).status_code == 200
    assert post(app, MINIMAL, headers={"Authorization": f"Bearer {PREDICT}"}).status_code == 200
    assert_google_error(post(app, MINIMAL, url=f"{PATH}?key=wrong"), 401, "UNAUTHENTICATED")
    refused = post(app, MINIMAL, url=f"{PATH}?key={READ}")
    assert "'predict'" in assert_google_error(refused, 403, "PERMISSION_DENIED")["message"]


def test_rate_limited_is_429_resource_exhausted_with_retry_after() -> None:
    app = build(FakeAnalysis(), rate_limit_rps=0.01)
    assert post(app, MINIMAL).status_code == 200
    limited = post(app, MINIMAL)
    assert_google_error(limited, 429, "RESOURCE_EXHAUSTED")
    assert int(limited.headers["retry-after"]) >= 1


def test_the_model_server_down_is_503_unavailable() -> None:
    fake = FakeAnalysis(fails_with=Unavailable("model server unavailable at localhost:8500"))
    response = post(build(fake), MINIMAL)
    error = assert_google_error(response, 503, "UNAVAILABLE")
    assert "model server" in error["message"]
    assert response.headers["retry-after"] == "1"


def test_a_failure_of_the_analysis_is_500_internal_without_its_details() -> None:
    fake = FakeAnalysis(fails_with=RuntimeError("secret internals"))
    error = assert_google_error(post(build(fake), MINIMAL), 500, "INTERNAL")
    assert "secret" not in json.dumps(error)


def test_utf16_offsets() -> None:
    assert utf16_offsets("plain ascii") is None
    assert utf16_offsets("café ü") is None  # the BMP counts alike
    assert utf16_offsets("\U0001f600a\U0001f600") == [0, 2, 3, 5]


def test_the_route_is_documented_with_perspectives_names() -> None:
    operation = build(FakeAnalysis()).openapi()["paths"][PATH]["post"]
    assert {"200", "400", "401", "413", "429", "503"} <= set(operation["responses"])
    answer = AnalyzeCommentResponse.model_json_schema(by_alias=True)["properties"]
    assert {"attributeScores", "languages", "clientToken"} == set(answer)


def _inference_app(tmp_path: Path) -> FastAPI:
    """The inference service's own app over a stand-in runtime (nothing is started)."""
    from mlcycle.common.settings import load_settings
    from mlcycle.inference.api import create_app
    from mlcycle.inference.runtime import InferenceRuntime

    runtime = MagicMock(spec=InferenceRuntime)
    for part in ("client", "tracker", "cache", "predictor"):
        setattr(runtime, part, MagicMock())
    runtime.embedded_redis = runtime.monitor = runtime.offpath = None
    return create_app(load_settings(data_dir=tmp_path, max_body_bytes=MAX_BODY), runtime)


def test_the_inference_app_serves_the_route_in_googles_shape(tmp_path: Path) -> None:
    # The analysis itself runs against a real stack in tests/integration/test_perspective.py.
    app = _inference_app(tmp_path)
    unsupported = {**MINIMAL, "languages": ["fr"]}
    assert "fr" in assert_google_error(post(app, unsupported), 400, "INVALID_ARGUMENT")["message"]
    oversize = {"comment": {"text": "x" * MAX_BODY}, "requestedAttributes": {"TOXICITY": {}}}
    assert_google_error(post(app, oversize), 413, "RESOURCE_EXHAUSTED")  # the edge's refusal
    other = post(app, {"instances": []}, url="/v1/predict").json()["error"]
    assert other["code"] == "validation_failed"  # the other routes keep mlcycle's shape
    schemas = app.openapi()["components"]["schemas"]
    assert "requestedAttributes" in schemas["AnalyzeCommentRequest"]["properties"]
