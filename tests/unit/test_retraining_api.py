"""``/v1/retraining-runs`` over loopback HTTP: scopes, refusals (409 naming the rule), 4xx.

One app per module on a SQLite store, with the route table's own scopes; each test
works on a model name of its own, so they share the server without sharing runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from mlcycle.clients.trainer import RetrainingRefused, TrainerClient
from mlcycle.common.errors import Forbidden, InvalidInput
from mlcycle.common.http import BackgroundServer, RouteAccess, install_edge
from mlcycle.common.keys import KeyRing
from mlcycle.common.settings import load_settings
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.access import route_scopes
from mlcycle.contracts.retraining import RetrainingPolicy
from mlcycle.trainer.retraining import Retraining
from mlcycle.trainer.retraining_api import retraining_router

KEYS = ("runner:train:s-train", "viewer:read:s-read", "root:admin:s-admin")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data: Path = tmp_path_factory.mktemp("retraining-api")
    settings = load_settings(data_dir=data)
    store = SqliteStore(data / "store.sqlite3")
    table = {route: s for route, s in route_scopes("trainer").items() if "retraining" in route[1]}
    access = RouteAccess(KeyRing.from_entries(KEYS), table)
    app = FastAPI()
    install_edge(app, service="trainer", max_body_bytes=64 * 1024)
    retraining = Retraining(store, RetrainingPolicy(new_votes=100))
    app.include_router(retraining_router(settings.trainer, retraining, access))
    server = BackgroundServer(access.verify(app), "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        store.close()


def client(base_url: str, key: str) -> TrainerClient:
    return TrainerClient(base_url, api_key=key)


def error(response: httpx.Response) -> str:
    return response.json()["error"]["message"]


def test_scopes_on_every_route(base_url: str) -> None:
    body = {"trigger": "manual", "name": "scoped"}
    with httpx.Client(base_url=base_url) as http:
        assert http.post("/v1/retraining-runs", json=body).status_code == 401
        viewer = {"Authorization": "Bearer s-read"}
        assert http.post("/v1/retraining-runs", json=body, headers=viewer).status_code == 403
        assert http.get("/v1/retraining-runs", headers=viewer).status_code == 200
    run = client(base_url, "s-train").request_retraining("manual", name="scoped")
    with pytest.raises(Forbidden):
        client(base_url, "s-train").stop_retraining(run.id, "not mine to stop")
    with pytest.raises(Forbidden, match="force.*needs `admin`"):
        client(base_url, "s-train").request_retraining("manual", name="scoped", force=True)
    with pytest.raises(Forbidden):
        client(base_url, "s-read").report_stage(run.id, "label", "running")
    stopped = client(base_url, "s-admin").stop_retraining(run.id, "testing the scope")
    assert stopped.stop_requested and stopped.stop_reason == "root: testing the scope"


def test_a_refusal_is_409_naming_the_rule_and_is_listed(base_url: str) -> None:
    runner = client(base_url, "s-train")
    run = runner.request_retraining("schedule", name="refused", votes=10)
    assert (run.status, run.actor, run.votes_at_start) == ("running", "runner", 10)
    with pytest.raises(RetrainingRefused, match="409.*still running") as caught:
        runner.request_retraining("schedule", name="refused")
    assert caught.value.run.status == "skipped" and caught.value.run.refusal == "running"
    overview = client(base_url, "s-read").retraining(name="refused")
    assert overview.running == run.id and overview.policy.new_votes == 100
    assert {r.status for r in overview.runs} == {"running", "skipped"}
    with pytest.raises(RetrainingRefused, match="5 new votes since the last run"):
        runner.request_retraining("new_votes", name="fresh", votes=5)


def test_stages_are_reported_in_order_and_bad_reports_are_4xx(base_url: str) -> None:
    runner = client(base_url, "s-train")
    run = runner.request_retraining("manual", name="staged")
    with pytest.raises(InvalidInput, match="409.*next stage .* is label, not bless"):
        runner.report_stage(run.id, "bless", "running")
    run = runner.report_stage(run.id, "label", "succeeded", detail={"label_run": "lr-9"})
    assert run.stages[0].detail == {"label_run": "lr-9"}
    with httpx.Client(base_url=base_url, headers={"Authorization": "Bearer s-train"}) as http:
        path = f"/v1/retraining-runs/{run.id}/stages"
        bad = http.post(path, json={"name": "deploy", "status": "running"})
        assert bad.status_code == 422 and "name" in str(bad.json()["error"]["details"])
        bad = http.post(path, json={"name": "featurize", "status": "done"})
        assert bad.status_code == 422
        bad = http.post(path, json={"name": "featurize", "status": "running", "extra": 1})
        assert bad.status_code == 422
        bad = http.post("/v1/retraining-runs", json={"trigger": "cron"})
        assert bad.status_code == 422 and "trigger" in str(bad.json()["error"]["details"])
        reader = {"Authorization": "Bearer s-read"}
        assert http.get("/v1/retraining-runs/not-a-run", headers=reader).status_code == 422
        missing = http.get("/v1/retraining-runs/rt-20260101T000000-abcdef", headers=reader)
        assert missing.status_code == 404 and "no retraining run" in error(missing)
    run = runner.report_stage(run.id, "featurize", "failed", error="no labels in train split")
    assert (run.status, run.reason) == ("failed", "no labels in train split")
    assert client(base_url, "s-read").retraining_run(run.id).status == "failed"
    with pytest.raises(InvalidInput, match="409.*is failed: it takes no more"):
        runner.report_stage(run.id, "train", "running")
    with pytest.raises(InvalidInput, match="409.*nothing to stop"):
        client(base_url, "s-admin").stop_retraining(run.id, "late")


def test_the_cli_shows_runs_refuses_politely_and_stops(base_url: str) -> None:
    from typer.testing import CliRunner

    from mlcycle.cli import app

    cli = CliRunner()
    running = client(base_url, "s-train").request_retraining("manual")  # the task's model
    shown = cli.invoke(app, ["retrain", "status", "--url", base_url, "--api-key", "s-read"])
    assert shown.exit_code == 0, shown.output
    assert "cooldown 6 h" in shown.output and running.id in shown.output
    # Every service at the one test server: the trainer refuses before any other is called.
    asked = cli.invoke(
        app, ["retrain", "run", "--trigger", "schedule", "--urls", base_url, "--api-key", "s-train"]
    )
    assert asked.exit_code == 0, asked.output
    assert "retraining refused" in asked.output and "still running" in asked.output
    wrong = cli.invoke(app, ["retrain", "run", "--trigger", "drift", "--urls", base_url])
    assert wrong.exit_code != 0 and "schedule or manual" in wrong.output
    stopped = cli.invoke(
        app,
        ["retrain", "stop", running.id, "--reason", "by hand", "--url", base_url,
         "--api-key", "s-admin"],
    )
    assert stopped.exit_code == 0, stopped.output
    assert "stop requested (root: by hand)" in stopped.output
