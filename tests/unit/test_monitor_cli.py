"""``mlcycle monitor``: the client's monitoring calls, the tables and the HTML report, from
recorded answers (tests/fixtures/monitor_views.py) served by an in-process transport."""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from mlcycle.cli import app
from mlcycle.cli import monitoring as monitor_cli
from mlcycle.clients.base import ServiceClient
from mlcycle.clients.inference import FeedbackReceipt, InferenceClient
from mlcycle.common.errors import MlcycleError, NotFound
from mlcycle.common.settings import Settings
from mlcycle.contracts.monitoring import Decision, MonitoringState
from mlcycle.local import monitor_report
from mlcycle.local.monitor_report import (
    MonitorView,
    collect,
    latest_windows,
    print_state,
    quality_row,
    signal_row,
    write_report,
)
from tests.fixtures import monitor_views as recorded

BASE = "http://inference.test:8000"


def serving(seen: list[httpx.Request] | None = None, *, status: int = 200) -> httpx.MockTransport:
    """The monitoring routes answering the recorded state and history."""

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if status != 200:
            body = {"error": {"code": "unavailable", "message": "the monitor is off"}}
            return httpx.Response(status, json=body)
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        if request.url.path == "/v1/monitoring":
            if query.get("version", str(recorded.VERSION)) != str(recorded.VERSION):
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "v"}})
            return httpx.Response(200, json=recorded.state_json())
        if request.url.path == "/v1/monitoring/history":
            since = datetime.fromisoformat(query["since"]) if "since" in query else None
            answer = recorded.history_json(
                query.get("signal"), since=since, limit=int(query.get("limit", 1000))
            )
            return httpx.Response(200, json=answer)
        if request.url.path == "/v1/feedback":
            decisions = json.loads(request.content)
            answer = {"accepted": len(decisions), "joined": 1, "pending": 1, "duplicate": 0}
            return httpx.Response(202, json=answer)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no route"}})

    return httpx.MockTransport(handle)


def client(seen: list[httpx.Request] | None = None, **kwargs) -> InferenceClient:
    return InferenceClient(BASE, api_key="k", transport=serving(seen, **kwargs))


def inference_answers(monkeypatch: pytest.MonkeyPatch, fake: InferenceClient) -> None:
    """The command's inference client is ``fake``; the trainer's stays the real one."""
    real = monitor_cli.service_client

    def chosen(settings: Settings, service: str, *rest: str | None) -> ServiceClient:
        return fake if service == "inference" else real(settings, service, *rest)

    monkeypatch.setattr(monitor_cli, "service_client", chosen)


def view() -> MonitorView:
    state = MonitoringState.model_validate(recorded.state_json())
    history = {(recorded.VERSION, s): ws for s, ws in recorded.history().items()}
    return MonitorView(state, history)


# -- the client -----------------------------------------------------------------------------


def test_the_state_comes_back_typed_for_every_version_or_the_one_asked() -> None:
    seen: list[httpx.Request] = []
    state = client(seen).monitoring()
    (version,) = state.versions
    score = next(s for s in version.signals if s.signal == "score")
    assert score.alarm and score.last is not None and score.last.statistic == pytest.approx(0.03)
    assert version.quality[0].realized is not None and version.quality[1].closed_at is None
    assert str(seen[0].url) == f"{BASE}/v1/monitoring"
    assert seen[0].headers["authorization"] == "Bearer k"
    assert client(seen).monitoring(version=recorded.VERSION) == state
    assert str(seen[1].url) == f"{BASE}/v1/monitoring?version=3"
    with pytest.raises(NotFound):
        client().monitoring(version=99)


def test_history_sends_only_the_filters_given() -> None:
    seen: list[httpx.Request] = []
    since = datetime(2026, 3, 1, 12, 10, tzinfo=UTC)
    items = client(seen).monitoring_history(since=since, version=3, signal="score", limit=50)
    assert {w.signal for w in items} == {"score"}
    assert [w.closed_at.minute for w in items] == [15, 20, 25, 30]
    query = parse_qs(seen[0].url.query.decode())
    assert query == {
        "since": ["2026-03-01T12:10:00+00:00"],
        "version": ["3"],
        "signal": ["score"],
        "limit": ["50"],
    }
    client(seen).monitoring_history()
    assert seen[1].url.query == b""


def test_feedback_posts_the_decisions_as_given_and_reads_the_receipt() -> None:
    seen: list[httpx.Request] = []
    decided = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    decisions = [
        Decision(comment_id="c-1", label=1, decided_at=decided),
        # Without keys the body names the reviewer; with a named key the service refuses
        # anyone but the key's own name.
        Decision(comment_id="c-2", label=0, reviewer="alice"),
    ]
    receipt = client(seen).feedback(decisions)
    assert receipt == FeedbackReceipt(accepted=2, joined=1, pending=1, duplicate=0)
    assert json.loads(seen[0].content) == [
        {"comment_id": "c-1", "label": 1, "decided_at": "2026-03-01T13:00:00Z", "task": "toxicity"},
        {"comment_id": "c-2", "label": 0, "reviewer": "alice", "task": "toxicity"},
    ]


def test_an_error_answer_is_an_error_naming_the_service() -> None:
    with pytest.raises(MlcycleError, match="inference service answered 503"):
        client(status=503).monitoring()
    with pytest.raises(NotFound):
        InferenceClient(BASE, transport=serving(status=404)).monitoring_history()


def test_collect_walks_each_signal_s_history_and_keeps_the_latest_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(monitor_report, "PAGE", 2)
    seen: list[httpx.Request] = []
    collected = collect(client(seen), windows=3)
    asked = [
        {k: v[0] for k, v in parse_qs(r.url.query.decode()).items()}
        for r in seen
        if r.url.path.endswith("/history")
    ]
    # score's 6 windows come in pages of 2, each page after the last one's close.
    score_pages = [q for q in asked if q["signal"] == "score"]
    assert len(score_pages) == 4 and "since" not in score_pages[0]
    assert score_pages[1]["since"] == "2026-03-01T12:10:00+00:00"
    assert all(q["version"] == "3" and q["limit"] == "2" for q in asked)
    score = collected.windows(recorded.VERSION, "score")
    assert [w.statistic for w in score] == pytest.approx([0.018, 0.024, 0.03])  # the latest
    assert len(collected.windows(recorded.VERSION, "ngrams")) == 3
    assert collected.windows(recorded.VERSION, "oov_share") == []


def test_collect_stops_when_the_service_ignores_since(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor_report, "PAGE", 2)
    full = recorded.history_json("score", limit=2)

    def same_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=full)

    stubborn = InferenceClient(BASE, transport=httpx.MockTransport(same_page))
    windows = latest_windows(stubborn, recorded.VERSION, "score", since=None, keep=10)
    assert len(windows) == 4  # the first page, then the same page again, and no more


# -- the tables --------------------------------------------------------------------------------


def test_a_signal_row_shows_the_statistic_against_its_thresholds_and_since_when() -> None:
    states = {s.signal: s for s in recorded.signals()}
    signal, status, statistic, threshold, test, window, since = signal_row(states["score"])
    assert (signal, status, statistic, threshold) == ("score", "alarm", "0.03", "0.02 (0.015)")
    assert test == "Jensen-Shannon divergence"
    assert window == "1,000, 2026-03-01 12:25:00 to 12:30:00"
    assert since == "2026-03-01 12:20:00"
    unavailable = signal_row(states["oov_share"])
    assert unavailable[1] == "unavailable: the transform has no vocabulary"
    assert set(unavailable[2:]) == {"–"}


def test_a_quality_row_puts_estimated_beside_realized_with_the_error_and_the_lag() -> None:
    closed, filling = recorded.quality()
    row = quality_row(closed)
    assert row[0] == "2026-03-01 12:00:00 to 13:00:00"
    assert row[1:4] == ("500", "480 (2)", "0.750 / 0.620")
    assert row[4] == "0.910 / 0.870"
    assert row[-2:] == ("0.130 / 0.040", "10 min / 2.0 h")
    waiting = quality_row(filling)
    assert waiting[0] == "2026-03-01 13:00:00, filling"
    assert waiting[3] == "0.740 / –" and waiting[-2] == "– / –"


def test_the_terminal_shows_a_table_per_version_and_its_quality() -> None:
    console = Console(record=True, width=250)
    print_state(console, view().state)
    text = console.export_text()
    assert "toxicity v3: drift signals" in text
    assert re.search(r"score\s+│ alarm\s+│\s+0\.03 │\s+0\.02 \(0\.015\)", text)
    assert "toxicity v3: quality, estimated / realized" in text
    assert "0.750 / 0.620" in text
    empty = Console(record=True, width=120)
    print_state(empty, MonitoringState(model="toxicity", versions=[]))
    assert "no model version monitored yet" in empty.export_text()


# -- the page --------------------------------------------------------------------------------


def test_the_report_plots_each_signal_over_time_and_its_latest_shares(tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.html", view(), generated_at=recorded.T0)
    page = path.read_text()
    # score and ngrams have windows and bins; oov_share has neither.
    assert page.count("data-plot='statistic'") == 2
    assert page.count("data-plot='shares'") == 2
    assert page.count("data-plot='quality'") == 1
    assert "No window evaluated yet." in page  # oov_share
    assert "the transform has no vocabulary" in page
    # The mover of the alarmed window, escaped; its comment's id.
    assert "&lt;b&gt;" in page and "<b>" not in page and "c-17" in page
    # Self-contained: the plots are inline, nothing is fetched.
    assert "src='data:image/png;base64," in page
    assert not re.search(r"(src|href)=['\"]https?:", page)


def test_a_report_without_versions_says_so(tmp_path: Path) -> None:
    empty = MonitorView(MonitoringState(model="toxicity", versions=[]))
    page = write_report(tmp_path / "r.html", empty, generated_at=recorded.T0).read_text()
    assert "no model version monitored yet" in page and "data-plot" not in page


# -- the command -----------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[httpx.Request]:
    """The command's client answers from the recorded state; data under tmp_path."""
    seen: list[httpx.Request] = []
    monkeypatch.setenv("MLCYCLE_DATA_DIR", str(tmp_path))
    inference_answers(monkeypatch, client(seen))
    return seen


def test_the_command_prints_the_tables_and_writes_the_report_under_the_data_dir(
    served: list[httpx.Request], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["monitor"], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "drift signals" in result.output and "quality, estimated / realized" in result.output
    (report,) = (tmp_path / "reports").glob("monitor-*.html")
    assert f"monitor report: {report}" in result.output.replace("\n", "")
    assert "data-plot='statistic'" in report.read_text()


def test_the_command_prints_the_raw_state_as_json(served: list[httpx.Request]) -> None:
    result = CliRunner().invoke(app, ["monitor", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == recorded.state_json()
    assert [r.url.path for r in served] == ["/v1/monitoring"]


def test_the_report_goes_where_asked_and_not_at_all_with_no_report(
    served: list[httpx.Request], tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere" / "m.html"
    assert CliRunner().invoke(app, ["monitor", "--report", str(target)]).exit_code == 0
    assert target.is_file()
    result = CliRunner().invoke(app, ["monitor", "--no-report"])
    assert result.exit_code == 0 and "monitor report" not in result.output
    assert not (tmp_path / "reports").exists()


def test_an_unreachable_service_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLCYCLE_DATA_DIR", str(tmp_path))
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = CliRunner().invoke(app, ["monitor", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 2
    assert "cannot reach the inference service" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit(2), nothing raised past it


def test_an_error_answer_is_a_message_with_its_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLCYCLE_DATA_DIR", str(tmp_path))
    inference_answers(monkeypatch, client(status=503))
    result = CliRunner().invoke(app, ["monitor"], terminal_width=250)
    assert result.exit_code == 2
    assert "answered 503" in result.output and "the monitor is off" in result.output
    assert "Traceback" not in result.output


def test_one_version_is_asked_for_and_an_unknown_one_is_a_message(
    served: list[httpx.Request],
) -> None:
    result = CliRunner().invoke(app, ["monitor", "--version", "3", "--no-report"])
    assert result.exit_code == 0, result.output
    assert served[0].url.params["version"] == "3"
    missing = CliRunner().invoke(app, ["monitor", "--version", "9"])
    assert missing.exit_code == 2 and "answered 404" in missing.output


def test_a_report_that_cannot_be_written_is_a_message(
    served: list[httpx.Request], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "monitor.html"
    result = CliRunner().invoke(app, ["monitor", "--report", str(target)], terminal_width=250)
    assert result.exit_code == 2
    assert "cannot write the report to" in result.output and "Traceback" not in result.output
