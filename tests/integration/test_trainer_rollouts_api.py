"""Rollouts over real HTTP and the CLI, decided on signals from a real Redis.

No model server runs here, so the controller's probe finds none: every rollout must
hold on missing data, whatever an admin does short of forcing it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from mlcycle.cli import app as cli
from mlcycle.common.infra.process import free_port
from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.common.settings import load_settings
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.rollout_signals import SharedSignals
from mlcycle.trainer.rollouts import RolloutController
from mlcycle.trainer.rollouts_api import rollouts_router
from tests.fixtures.registry import NAME, register, serve_routers

pytestmark = pytest.mark.integration

ADMIN, READER = "ops-secret", "reader-secret"
KEYS = (f"ops:admin:{ADMIN}", f"reader:read:{READER}")


@dataclass
class Api:
    url: str
    controller: RolloutController
    registry: ModelRegistry

    def call(self, method: str, path: str, body: Any = None, key: str = ADMIN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.request(
            method, f"{self.url}{path}", json=body, headers=headers, timeout=30
        )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("rollouts")
    settings = load_settings(
        data_dir=root,
        api_keys=KEYS,
        redis_url=redis_server.url,
        model_server_target=f"127.0.0.1:{free_port()}",  # nothing listens: the server is down
    )
    store = SqliteStore(root / "store.sqlite3")
    registry = ModelRegistry(settings.trainer, store)
    for version in (1, 2, 3):
        register(registry, version, bless="good")
    registry.promote(NAME, 1, "first")
    signals = SharedSignals(settings, redis_server.url)
    controller = RolloutController(registry, store, signals, settle_s=0.0)
    try:
        with serve_routers(settings, partial(rollouts_router, settings.trainer, controller)) as url:
            yield Api(url, controller, registry)
    finally:
        signals.close()
        store.close()


def test_starting_a_rollout_checks_the_key_the_body_and_the_registry(api: Api) -> None:
    body = {"version": 2, "reason": "retrained"}
    assert api.call("POST", "/v1/rollouts", body, key=READER).status_code == 403
    bad = api.call("POST", "/v1/rollouts", {**body, "policy": {"canary_steps": [5, 50]}})
    assert bad.status_code == 422 and "100" in bad.text
    assert api.call("POST", "/v1/rollouts", {**body, "version": 9}).status_code == 404
    started = api.call("POST", "/v1/rollouts", body)
    assert started.status_code == 201, started.text
    rollout = started.json()["rollout"]
    assert (rollout["phase"], rollout["decisions"][0]["actor"]) == ("shadow", "ops")
    again = api.call("POST", "/v1/rollouts", {**body, "version": 3})
    assert again.status_code == 409 and rollout["id"] in again.json()["error"]["message"]


def test_a_rollout_holds_without_a_model_server_and_obeys_an_admin(api: Api) -> None:
    rollout_id = api.controller.listing(NAME, active=True)[0].id
    api.controller.tick()
    shown = api.call("GET", f"/v1/rollouts/{rollout_id}", key=READER).json()
    assert shown["rollout"]["decisions"][-1]["action"] == "hold"
    assert "missing data" in shown["rollout"]["decisions"][-1]["reason"]
    comparison = shown["comparison"]
    assert comparison["model_server_up"] is False and comparison["evidence_age_s"] is None
    assert api.call("GET", "/v1/rollouts/nope", key=READER).status_code == 404
    listed = api.call("GET", "/v1/rollouts?active=true", key=READER).json()["rollouts"]
    assert [r["rollout"]["id"] for r in listed] == [rollout_id]

    reason = {"reason": "checked by hand"}
    force = f"/v1/rollouts/{rollout_id}:force"
    assert api.call("POST", force, reason, key=READER).status_code == 403
    forced = api.call("POST", f"/v1/rollouts/{rollout_id}:force", reason).json()["rollout"]
    assert (forced["phase"], forced["decisions"][-1]["action"]) == ("canary", "force")
    assert api.registry.pointer(NAME).canary == 2
    assert api.call("POST", f"/v1/rollouts/{rollout_id}:jump", reason).status_code == 422
    aborted = api.call("POST", f"/v1/rollouts/{rollout_id}:abort", reason).json()["rollout"]
    assert (aborted["phase"], aborted["status"]) == ("aborted", "finished")
    late = api.call("POST", f"/v1/rollouts/{rollout_id}:pause", reason)
    assert late.status_code == 409 and "finished" in late.json()["error"]["message"]


def test_the_cli_shows_the_latest_rollout(
    api: Api, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLCYCLE_DATA_DIR", str(tmp_path))
    argv = ["rollout", "status", "--url", api.url, "--api-key", ADMIN]
    result = CliRunner().invoke(cli, argv, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "toxicity v2 against v1" in result.output and "abort" in result.output
    missing = CliRunner().invoke(cli, [*argv[:2], "nope", *argv[2:]])
    assert missing.exit_code == 2 and "no rollout" in missing.output
