"""An admin's actions on the console's models page, against the trainer's real registry and
rollouts API over loopback: the registry changes under the admin's key name, other keys are
refused, and the trainer's refusals (or its absence) are shown on the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from mlcycle.common.infra.process import free_port
from mlcycle.common.keys import ANONYMOUS
from mlcycle.common.settings import Settings, load_settings
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.labeler.api import create_app
from mlcycle.labeler.console.admin import TrainerAdmin
from mlcycle.labeler.console.session import CSRF_COOKIE, KEY_COOKIE
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.registry_api import models_router
from mlcycle.trainer.rollouts import RolloutController
from mlcycle.trainer.rollouts_api import rollouts_router
from tests.fixtures.apps import NotingWorker
from tests.fixtures.console import WordExplainer
from tests.fixtures.registry import NAME, Clock, Signals, register, serve_routers

pytestmark = pytest.mark.integration

CSRF = "admin-csrf-token"
ADMIN, READER, LABELER = "ada-secret", "reed-secret", "rita-secret"
KEYS = (f"ada:admin:{ADMIN}", f"reed:read:{READER}", f"rita:read+label:{LABELER}")


@dataclass
class Rig:
    """The trainer's API over loopback, its registry and rollouts, and the labeler's settings."""

    url: str
    settings: Settings
    store: SqliteStore
    registry: ModelRegistry
    controller: RolloutController

    def console(
        self, secret: str | None, trainer_url: str | None = None, settings: Settings | None = None
    ) -> TestClient:
        """The labeler app signed in with ``secret``, its console dialing the trainer."""
        app = create_app(
            settings or self.settings,
            store=self.store,
            producer=None,  # type: ignore[arg-type]  # the admin pages send nothing to Kafka
            worker=NotingWorker(None, name="noted"),  # type: ignore[arg-type]
            explainer=WordExplainer(),
            trainer=TrainerAdmin(trainer_url or self.url, timeout_s=5.0),
        )
        client = TestClient(app, base_url="http://127.0.0.1")
        client.cookies.set(CSRF_COOKIE, CSRF, path="/console")
        if secret:
            client.cookies.set(KEY_COOKIE, secret, path="/console")
        return client


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    settings = load_settings(data_dir=tmp_path, api_keys=KEYS)
    store = SqliteStore(tmp_path / "store.sqlite3")
    registry = ModelRegistry(settings.trainer, store)
    for version in (1, 2, 3):
        register(registry, version, bless="good")
    registry.promote(NAME, 1, "first", actor="setup")
    controller = RolloutController(registry, store, Signals(Clock()), settle_s=0.0)
    routers = (
        partial(models_router, settings.trainer, registry),
        partial(rollouts_router, settings.trainer, controller),
    )
    try:
        with serve_routers(settings, *routers) as url:
            yield Rig(url, settings, store, registry, controller)
    finally:
        store.close()


def submit(client: TestClient, path: str, **fields: str) -> httpx.Response:
    return client.post(path, data={"csrf": CSRF, **fields})


def test_an_admin_promotes_and_rolls_back_under_the_admins_key_name(rig: Rig) -> None:
    console = rig.console(ADMIN)
    page = console.get("/console/models")
    assert page.status_code == 200
    assert 'action="/console/models/rollback"' in page.text
    assert '<label for="promote-reason">Reason (required)</label>' in page.text

    promoted = submit(console, "/console/models/promote", model=f"{NAME}/2", reason="better dev")
    # Done, the form redirects to the page (a reload does not promote again), which says so once.
    assert [step.status_code for step in promoted.history] == [303]
    assert promoted.status_code == 200, promoted.text
    assert 'role="status">Promoted version 2 to production.</p>' in promoted.text
    assert "Promoted version 2" not in console.get("/console/models").text
    production = rig.registry.production(NAME)
    assert production is not None and production.version == 2
    assert production.history[-1].actor == "ada"
    assert production.history[-1].reason == "better dev"

    rolled = submit(console, "/console/models/rollback", reason="complaints")
    assert rolled.status_code == 200, rolled.text
    production = rig.registry.production(NAME)
    assert production is not None and production.version == 1
    assert production.history[-1].actor == "ada"
    # The page is read again after the change: version 1 is shown in production.
    assert "<td>1</td><td>production</td>" in rolled.text


def test_an_admin_steers_a_running_rollout(rig: Rig) -> None:
    rollout = rig.controller.start(NAME, 3, reason="retrained", actor="setup")
    console = rig.console(ADMIN)
    page = console.get("/console/models")
    assert f'name="rollout" value="{rollout.id}"' in page.text
    answer = submit(
        console, "/console/rollouts/steer", rollout=rollout.id, order="pause", reason="holiday"
    )
    assert answer.status_code == 200, answer.text
    assert f"Rollout {rollout.id}: pause done." in answer.text
    paused = rig.controller.get(rollout.id)
    assert paused.status == "paused"
    assert (paused.decisions[-1].actor, paused.decisions[-1].reason) == ("ada", "holiday")

    rig.controller.abort(rollout.id, actor="setup", reason="done with it")
    late = submit(
        console, "/console/rollouts/steer", rollout=rollout.id, order="resume", reason="x"
    )
    assert late.status_code == 409 and "The trainer refused (409):" in late.text


def test_with_keys_off_anyone_on_the_local_stack_may_act_and_no_key_is_sent(rig: Rig) -> None:
    keys_off = rig.settings.replace(api_keys=())
    with serve_routers(keys_off, partial(models_router, keys_off.trainer, rig.registry)) as url:
        console = rig.console(None, trainer_url=url, settings=keys_off)
        assert 'action="/console/models/promote"' in console.get("/console/models").text
        promoted = submit(console, "/console/models/promote", model=f"{NAME}/3", reason="local")
    assert promoted.status_code == 200, promoted.text
    production = rig.registry.production(NAME)
    assert production is not None and production.version == 3
    assert production.history[-1].actor == ANONYMOUS


@pytest.mark.parametrize("secret", [READER, LABELER])
def test_other_keys_see_no_actions_and_a_forced_post_is_refused(rig: Rig, secret: str) -> None:
    console = rig.console(secret)
    page = console.get("/console/models")
    assert page.status_code == 200
    assert "/console/models/rollback" not in page.text and "<form" in page.text  # sign-out only
    forced = submit(console, "/console/models/promote", model=f"{NAME}/2", reason="mine")
    assert forced.status_code == 403
    assert "lacks the &#39;admin&#39; scope" in forced.text
    production = rig.registry.production(NAME)
    assert production is not None and production.version == 1


def test_the_trainers_refusal_and_absence_are_shown_on_the_page(rig: Rig) -> None:
    console = rig.console(ADMIN)
    refused = submit(console, "/console/models/rollback", reason="try")
    assert refused.status_code == 422
    alert = refused.text.split('role="alert">', 1)[1].split("</p>", 1)[0]
    assert alert.startswith("The trainer refused (422):")
    assert "there is nothing to roll back to" in alert

    no_reason = submit(console, "/console/models/rollback", reason=" ")
    assert no_reason.status_code == 400 and "Give a reason" in no_reason.text
    no_csrf = console.post("/console/models/rollback", data={"reason": "x"})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text

    away = rig.console(ADMIN, trainer_url=f"http://127.0.0.1:{free_port()}")
    unreachable = submit(away, "/console/models/promote", model=f"{NAME}/2", reason="x")
    assert unreachable.status_code == 200
    assert "is unreachable: nothing changed." in unreachable.text
    production = rig.registry.production(NAME)
    assert production is not None and production.version == 1
