"""The monitoring calls over real HTTP: the client and ``mlcycle monitor --url`` against a
small server answering the routes' recorded shapes (tests/fixtures/monitor_views.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from typer.testing import CliRunner

from mlcycle.cli import app
from mlcycle.clients.inference import FeedbackReceipt, InferenceClient
from mlcycle.common.errors import Unauthenticated
from mlcycle.common.http import BackgroundServer
from mlcycle.contracts.monitoring import Decision
from tests.fixtures import monitor_views as recorded

pytestmark = pytest.mark.integration

KEY = "monitor-test-key"


def monitoring_app(asked: list[dict[str, Any]]) -> FastAPI:
    api = FastAPI()

    def authorized(authorization: str | None) -> None:
        if authorization != f"Bearer {KEY}":
            raise HTTPException(401, "no key")

    @api.exception_handler(HTTPException)
    async def as_error(_: Request, exc: HTTPException) -> JSONResponse:
        body = {"error": {"code": "unauthenticated", "message": exc.detail, "details": None}}
        return JSONResponse(body, status_code=exc.status_code)

    @api.get("/v1/monitoring")
    def state(authorization: str | None = Header(None)) -> dict[str, Any]:
        authorized(authorization)
        return recorded.state_json()

    @api.get("/v1/monitoring/history")
    def history(
        request: Request,
        signal: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
        authorization: str | None = Header(None),
    ) -> dict[str, Any]:
        authorized(authorization)
        asked.append(dict(request.query_params))
        return recorded.history_json(signal, since=since, limit=limit)

    @api.post("/v1/feedback", status_code=202)
    async def feedback(request: Request, authorization: str | None = Header(None)) -> Any:
        authorized(authorization)
        decisions = json.loads(await request.body())
        asked.append({"feedback": decisions})
        return {"accepted": len(decisions), "joined": 0, "pending": len(decisions), "duplicate": 0}

    return api


@pytest.fixture
def served() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    asked: list[dict[str, Any]] = []
    server = BackgroundServer(monitoring_app(asked), "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{server.port}", asked
    finally:
        server.stop()


def test_the_client_reads_the_state_the_history_and_posts_decisions(served) -> None:
    url, asked = served
    with InferenceClient(url, api_key=KEY) as client:
        (version,) = client.monitoring().versions
        assert {s.signal for s in version.signals} == {"score", "ngrams", "oov_share"}
        since = datetime(2026, 3, 1, 12, 10, tzinfo=UTC)
        items = client.monitoring_history(since=since, version=3, signal="ngrams", limit=5)
        assert {w.signal for w in items} == {"ngrams"}
        assert asked[-1] == {
            "since": "2026-03-01T12:10:00+00:00",
            "version": "3",
            "signal": "ngrams",
            "limit": "5",
        }
        receipt = client.feedback([Decision(comment_id="c-1", label=1)])
        assert receipt == FeedbackReceipt(accepted=1, joined=0, pending=1, duplicate=0)
        assert asked[-1] == {"feedback": [{"comment_id": "c-1", "label": 1, "task": "toxicity"}]}
    with pytest.raises(Unauthenticated), InferenceClient(url) as keyless:
        keyless.monitoring()


def test_the_command_over_http_prints_and_writes_the_report(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, asked = served
    monkeypatch.setenv("MLCYCLE_DATA_DIR", str(tmp_path))
    report = tmp_path / "monitor.html"
    argv = ["monitor", "--url", url, "--api-key", KEY, "--report", str(report)]
    result = CliRunner().invoke(app, argv, terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "toxicity v3: drift signals" in result.output
    assert [a["signal"] for a in asked] == ["score", "ngrams", "oov_share"]
    page = report.read_text()
    assert page.count("data-plot='statistic'") == 2 and page.count("data-plot='quality'") == 1
    # No trainer runs here: the rollouts section says so, and the report is written anyway.
    assert "<h2>Rollouts</h2><p>Not shown: the trainer did not answer" in page.replace("\n", "")
    refused = CliRunner().invoke(app, ["monitor", "--url", url, "--api-key", "wrong"])
    assert refused.exit_code == 2 and "answered 401" in refused.output
