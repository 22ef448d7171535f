"""The model registry REST API over real HTTP, on each store backend (SQLite, ES API)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlcycle.common.keys import KeyRing
from mlcycle.common.settings import TrainerSettings, load_settings
from mlcycle.common.store import Store
from mlcycle.contracts.models import ModelEvent
from mlcycle.contracts.serving import serving_config_path
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.registry_api import models_router
from mlcycle.trainer.serving_config import parse_serving_config
from tests.fixtures.registry import NAME, register, serve_routers

pytestmark = pytest.mark.integration

KEY = "k1"  # a bare key from before scopes: every scope
AUTH = {"Authorization": f"Bearer {KEY}"}
OPS_SECRET, READER_SECRET = "ops-secret", "reader-secret"
KEYS = (KEY, f"ops:admin:{OPS_SECRET}", f"reader:read+train+predict:{READER_SECRET}")


@dataclass
class Api:
    """A running registry API: base URL, the registry behind it and the events it emitted."""

    url: str
    registry: ModelRegistry
    events: list[ModelEvent]

    @property
    def settings(self) -> TrainerSettings:
        return self.registry.settings

    def get(self, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        headers = AUTH if auth else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def post(self, path: str, body: Any, *, auth: bool = True) -> httpx.Response:
        headers = AUTH if auth else {}
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=30)


def seed(registry: ModelRegistry) -> None:
    """Versions 1-3 blessed, 4 unblessed (all exported); 5 a candidate without a SavedModel."""
    for version in range(1, 6):
        register(
            registry,
            version,
            exported=version < 5,
            job=f"job-{version}",
            metrics={"dev": {"roc_auc": 0.8 + version / 100}},
            params={"units": 32 * version},
        )
        if version < 4:
            registry.bless(NAME, version, "beats production", compared_to=version - 1 or None)
        elif version == 4:
            registry.unbless(NAME, version, "worse than version 3", compared_to=3)


@pytest.fixture
def api(store: Store, tmp_path: Path) -> Iterator[Api]:
    settings = load_settings(data_dir=tmp_path, api_keys=KEYS)
    events: list[ModelEvent] = []
    registry = ModelRegistry(settings.trainer, store, emit=events.append)
    seed(registry)
    with serve_routers(settings, partial(models_router, settings.trainer, registry)) as url:
        yield Api(url, registry, events)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def served(api: Api) -> dict[str, int | None]:
    """Name -> the version labelled ``stable`` in models.config."""
    text = serving_config_path(api.settings.models_dir).read_text()
    return {name: model.stable for name, model in parse_serving_config(text).items()}


def test_list_and_read_models(api: Api) -> None:
    listing = api.get("/v1/models")
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert [m["version"] for m in body["models"]] == [5, 4, 3, 2, 1]
    assert body["production"] == {} and body["serving"] == {}
    assert body["models"][1]["state"] == "unblessed"

    blessed = api.get("/v1/models", params={"state": "blessed"}).json()["models"]
    assert [m["version"] for m in blessed] == [3, 2, 1]
    assert api.get("/v1/models", params={"name": "attack"}).json() == {
        "models": [],
        "production": {},
        "serving": {},
    }
    bad_state = api.get("/v1/models", params={"state": "shipped"})
    assert bad_state.status_code == 400
    assert error_of(bad_state)["details"]["allowed"][0] == "candidate"

    doc = api.get("/v1/models/3").json()
    assert doc["id"] == f"{NAME}:3" and doc["state"] == "blessed"
    assert doc["metrics"]["dev"]["roc_auc"] == pytest.approx(0.83)
    assert doc["blessing"] | {"judged_at": None} == {
        "blessed": True,
        "reason": "beats production",
        "compared_to": 2,
        "judged_at": None,
    }
    assert [h["action"] for h in doc["history"]] == ["registered", "blessed"]
    assert api.get("/v1/models/3", params={"name": NAME}).json() == doc


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/models/9", {}, 404),
        ("/v1/models/3", {"name": "attack"}, 404),
        ("/v1/models/abc", {}, 422),
        ("/v1/models/0", {}, 422),
        ("/v1/models/3", {"name": "../etc"}, 422),
        ("/v1/models", {"name": "a b"}, 422),
    ],
)
def test_reads_of_missing_or_malformed_versions_are_4xx(
    api: Api, path: str, params: dict[str, str], status: int
) -> None:
    response = api.get(path, params=params)
    assert response.status_code == status, response.text
    error = error_of(response)
    if status == 404 and not params:
        assert error["details"]["available"] == [5, 4, 3, 2, 1]


def test_promote_then_rollback(api: Api) -> None:
    first = api.post("/v1/models/2:promote", {"reason": "first release"})
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "production"
    second = api.post("/v1/models/3:promote", {"reason": "better", "name": NAME})
    assert second.status_code == 200, second.text
    assert second.json()["history"][-1]["reason"] == "better"
    assert api.get("/v1/models/2").json()["state"] == "archived"
    assert api.get("/v1/models").json()["production"] == {NAME: 3}
    assert served(api) == {NAME: 3}
    # Promoting the serving version again changes nothing.
    again = api.post("/v1/models/3:promote", {"reason": "again"})
    assert again.status_code == 200 and again.json() == second.json()

    rolled = api.post("/v1/models:rollback", {"reason": "3 misfires on emoji"})
    assert rolled.status_code == 200, rolled.text
    body = rolled.json()
    assert (body["production"]["version"], body["production"]["state"]) == (2, "production")
    assert (body["rolled_back"]["version"], body["rolled_back"]["state"]) == (3, "rolled_back")
    assert api.get("/v1/models").json()["production"] == {NAME: 2}
    assert served(api) == {NAME: 2}

    nothing = api.post("/v1/models:rollback", {"reason": "again", "name": NAME})
    assert nothing.status_code == 422, nothing.text
    assert "nothing to roll back to" in error_of(nothing)["message"]

    serving = {"promoted", "archived", "rolled_back", "restored"}
    events = [(e.event, e.version) for e in api.events if e.event in serving]
    assert events == [
        ("promoted", 2),
        ("archived", 2),
        ("promoted", 3),
        ("rolled_back", 3),
        ("restored", 2),
    ]


def test_the_listing_shows_each_name_s_stages(api: Api) -> None:
    api.registry.promote(NAME, 1, "first")
    api.registry.promote(NAME, 2, "second")
    api.registry.start_canary(NAME, 3, "blessed", share=0.25, rollout="r-1", actor="rollout:r-1")
    body = api.get("/v1/models").json()
    assert body["production"] == {NAME: 2}
    assert body["serving"] == {
        NAME: {
            "stable": 2,
            "canary": 3,
            "canary_share": 0.25,
            "shadow": None,
            "shadow_share": 0.0,
            "rollout": "r-1",
            "previous": [1],
        }
    }
    canaries = api.get("/v1/models", params={"state": "canary"}).json()["models"]
    assert [(m["version"], m["history"][-1]["rollout"]) for m in canaries] == [(3, "r-1")]
    archived = api.get("/v1/models", params={"state": "archived"}).json()["models"]
    assert [m["version"] for m in archived] == [1]
    # The old name of archived still filters.
    retired = api.get("/v1/models", params={"state": "retired"}).json()["models"]
    assert [m["version"] for m in retired] == [1]
    # A manual promote stays an admin's action; the running canary stays where it is.
    manual = api.post("/v1/models/1:promote", {"reason": "r"})
    assert manual.status_code == 200, manual.text
    assert api.get("/v1/models").json()["serving"][NAME] | {"previous": None} == {
        "stable": 1,
        "canary": 3,
        "canary_share": 0.25,
        "shadow": None,
        "shadow_share": 0.0,
        "rollout": "r-1",
        "previous": None,
    }


def test_promote_needs_force_for_an_unblessed_version_and_a_saved_model(api: Api) -> None:
    refused = api.post("/v1/models/4:promote", {"reason": "try"})
    assert refused.status_code == 422
    assert "force" in error_of(refused)["message"]
    forced = api.post("/v1/models/4:promote", {"reason": "known good", "force": True})
    assert forced.status_code == 200, forced.text
    assert forced.json()["history"][-1]["forced"] is True

    no_model = api.post("/v1/models/5:promote", {"reason": "try", "force": True})
    assert no_model.status_code == 404
    assert "no SavedModel" in error_of(no_model)["message"]
    missing = api.post("/v1/models/9:promote", {"reason": "try"})
    assert missing.status_code == 404
    other = api.post("/v1/models/1:promote", {"reason": "try", "name": "attack"})
    assert other.status_code == 404


def test_rollback_with_nothing_served_is_not_found(api: Api) -> None:
    response = api.post("/v1/models:rollback", {"reason": "oops"})
    assert response.status_code == 404
    assert "no production version" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/v1/models/2:promote", {}, "reason"),
        ("/v1/models/2:promote", {"reason": ""}, "reason"),
        ("/v1/models/2:promote", {"reason": "   "}, "reason"),
        ("/v1/models/2:promote", {"reason": "x" * 501}, "reason"),
        ("/v1/models/2:promote", {"reason": "x", "forse": True}, "forse"),
        ("/v1/models/2:promote", {"reason": "x", "name": "../x"}, "name"),
        ("/v1/models/2:promote", {"reason": "x", "force": "maybe"}, "force"),
        ("/v1/models/two:promote", {"reason": "x"}, "version"),
        ("/v1/models/0:promote", {"reason": "x"}, "version"),
        ("/v1/models/2.5:promote", {"reason": "x"}, "version"),
        ("/v1/models:rollback", {}, "reason"),
        ("/v1/models:rollback", {"reason": "x", "version": 2}, "version"),
    ],
)
def test_bad_write_requests_are_422_naming_the_field(
    api: Api, path: str, body: dict[str, Any], needle: str
) -> None:
    response = api.post(path, body)
    assert response.status_code == 422, response.text
    assert needle in error_of(response)["message"]
    assert api.get("/v1/models").json()["production"] == {}


@pytest.mark.parametrize("path", ["/v1/models/2:promote", "/v1/models:rollback"])
def test_writes_need_the_api_key(api: Api, path: str) -> None:
    missing = api.post(path, {"reason": "x"}, auth=False)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert error_of(missing)["code"] == "unauthenticated"
    wrong = httpx.post(
        f"{api.url}{path}", json={"reason": "x"}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert api.get("/v1/models", auth=False).status_code == 401  # reads need a key too
    assert api.get("/v1/models").json()["production"] == {}


def test_only_admin_keys_change_what_is_served_and_their_names_are_recorded(api: Api) -> None:
    def post(path: str, body: dict[str, Any], secret: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {secret}"}
        return httpx.post(f"{api.url}{path}", json=body, headers=headers, timeout=30)

    for path in ("/v1/models/2:promote", "/v1/models:rollback"):
        refused = post(path, {"reason": "x"}, READER_SECRET)
        assert refused.status_code == 403, refused.text
        assert error_of(refused)["details"]["required_scope"] == "admin"
        assert "'admin'" in error_of(refused)["message"]
    assert post("/v1/models/2:promote", {"reason": "first"}, OPS_SECRET).status_code == 200
    assert post("/v1/models/3:promote", {"reason": "better"}, OPS_SECRET).status_code == 200
    assert post("/v1/models:rollback", {"reason": "misfires"}, KEY).status_code == 200

    reader = {"Authorization": f"Bearer {READER_SECRET}"}
    two = httpx.get(f"{api.url}/v1/models/2", headers=reader, timeout=30).json()
    three = httpx.get(f"{api.url}/v1/models/3", headers=reader, timeout=30).json()
    legacy = KeyRing.from_entries([KEY]).keys[0].name
    assert [(h["action"], h.get("actor")) for h in two["history"]] == [
        ("registered", None),
        ("blessed", None),
        ("promoted", "ops"),
        ("archived", "ops"),
        ("restored", legacy),
    ]
    assert [(h["action"], h.get("actor")) for h in three["history"][2:]] == [
        ("promoted", "ops"),
        ("rolled_back", legacy),
    ]
    serving = [(e.event, e.version, e.actor) for e in api.events if e.event != "registered"]
    assert serving[-5:] == [
        ("promoted", 2, "ops"),
        ("archived", 2, "ops"),
        ("promoted", 3, "ops"),
        ("rolled_back", 3, legacy),
        ("restored", 2, legacy),
    ]


def test_openapi_documents_the_routes(api: Api) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/v1/models", "/v1/models/{version}", "/v1/models/{version}:promote"} <= set(paths)
    assert "/v1/models:rollback" in paths
    assert "404" in paths["/v1/models/{version}:promote"]["post"]["responses"]
