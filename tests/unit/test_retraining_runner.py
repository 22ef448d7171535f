"""The retraining runner against the real trainer side, with the other services faked over HTTP.

The trainer's registry, rollout and retraining routes are the real ones, served over
loopback on a SQLite store, with the rollout controller ticked on synthetic pooled
evidence while the runner follows the rollout. The labeler, featurizer, collector,
inference and the training job itself answer from fakes at the HTTP level (their
routes' real shapes); a full run on the real stack is the demo's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from rich.console import Console

from mlcycle.clients import (
    CollectorClient,
    FeaturizerClient,
    InferenceClient,
    LabelerClient,
    ModelServerClient,
    ServiceClients,
    TrainerClient,
)
from mlcycle.common.http import BackgroundServer, RouteAccess, add_health_routes, install_edge
from mlcycle.common.keys import KeyRing
from mlcycle.common.settings import Settings, load_settings
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.access import route_scopes
from mlcycle.contracts.monitoring import MonitoringState, SignalState, VersionMonitoring
from mlcycle.contracts.retraining import RetrainingPolicy
from mlcycle.contracts.rollouts import RolloutPolicy
from mlcycle.local.retraining import RetrainingRunner
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.registry_api import models_router
from mlcycle.trainer.retraining import Retraining
from mlcycle.trainer.retraining_api import retraining_router
from mlcycle.trainer.rollouts import RolloutController
from mlcycle.trainer.rollouts_api import rollouts_router
from tests.fixtures.registry import NAME, Clock, Signals, register

POLICY = RetrainingPolicy(
    trials=3,
    train_time_budget_s=120,
    new_votes=50,
    behaviour_margin=0.07,
    rollout=RolloutPolicy(min_samples=50, canary_steps=(50.0, 100.0)),
)
TRANSFORM = {
    "version": "tf-2", "dim": 10, "created_at": "2027-01-01T00:00:00Z", "fitted_on": {"train": 80},
    "config": {}, "label_run": "lr-2",
    "groups": {
        "word": {"offset": 0, "dim": 5, "mode": None, "ngram_max": 1, "vocabulary_size": 5},
        "char": {"offset": 5, "dim": 5, "ngram_range": [2, 4]},
        "metadata": {"offset": 10, "dim": 0, "numeric": [], "categorical": []},
    },
}
MANIFEST = {
    "transform": "tf-2", "dim": 10, "label_run": "lr-2", "task": NAME, "n_classes": 2,
    "splits": {"train": {"rows": 80}}, "rows": 100, "labels_without_comment": 0,
    "created_at": "2027-01-01T00:00:00Z",
}


class World:
    """What the faked services answer, and what they were asked."""

    def __init__(self) -> None:
        self.votes = 10
        self.alarms: list[str] = []
        self.job_state = "blessed"
        self.asked: list[tuple[str, str, Any]] = []
        self.on_label: Callable[[], None] = lambda: None
        self.on_job: Callable[[], None] = lambda: None

    def answer(self, request: httpx.Request) -> httpx.Response | None:
        path, method = request.url.path, request.method
        body = httpx.Request(method, request.url, content=request.read()).content
        self.asked.append((method, path, body and httpx.Response(200, content=body).json()))
        if path == "/v1/stats":
            return httpx.Response(200, json={"counts": {"votes": self.votes}})
        if path == "/v1/monitoring":
            return httpx.Response(200, json=self.monitoring())
        if (method, path) == ("POST", "/v1/label-runs"):
            return httpx.Response(202, json={"id": "lr-2", "status": "queued"})
        if path.startswith("/v1/label-runs/"):
            run_id = path.rsplit("/", 1)[1]
            if run_id == "lr-2":
                self.on_label()
            stats = {"labeled": 100, "votes": {"read": 300, "used": 300}}
            params = {"strategy": "majority", "task": NAME}
            return httpx.Response(
                200,
                json={"id": run_id, "task": NAME, "status": "succeeded", "params": params,
                      "stats": stats},
            )
        if path == "/v1/transforms":
            return httpx.Response(201, json=TRANSFORM)
        if path == "/v1/feature-sets":
            return httpx.Response(201, json=MANIFEST)
        if (method, path) == ("POST", "/v1/jobs"):
            queued = {"id": "job-2", "status": "queued", "label_run": "lr-2"}
            return httpx.Response(202, json=queued)
        if path == "/v1/jobs/job-2":
            self.on_job()
            model = {"name": NAME, "version": 2, "state": self.job_state, "reason": "judged"}
            return httpx.Response(
                200,
                json={"id": "job-2", "status": "succeeded", "label_run": "lr-2",
                      "result": {"metric": "roc_auc", "model": model}},
            )
        return None

    def monitoring(self) -> dict[str, Any]:
        since = datetime(2027, 1, 1, tzinfo=UTC)
        signals = [
            SignalState(
                model=NAME, model_version=1, signal=signal, status="alarm", alarm=True,
                since=since, windows=3, last=None,
            )
            for signal in self.alarms
        ]
        state = MonitoringState(
            model=NAME, versions=[VersionMonitoring(model_version=1, signals=signals)]
        )
        return state.model_dump(mode="json")


class Faked(httpx.BaseTransport):
    """The world's answer where it has one, else the real server's."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.world.answer(request)
        return answer if answer is not None else self.real.handle_request(request)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, retraining_poll_s=0.01)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def trainer_side(
    settings: Settings, empty_registry: ModelRegistry, sqlite_store: SqliteStore
) -> Iterator[dict[str, Any]]:
    registry, store = empty_registry, sqlite_store
    for version in (1, 2):
        register(registry, version, label_run=f"lr-{version}")
    registry.bless(NAME, 1, "first")
    registry.promote(NAME, 1, "first model", actor="alice")
    clock = Clock()
    signals = Signals(clock)
    controller = RolloutController(registry, store, signals, clock=clock)
    retraining = Retraining(store, POLICY, registry=registry, rollouts=controller)
    table = {r: s for r, s in route_scopes("trainer").items() if not r[1].startswith("/v1/jobs")}
    access = RouteAccess(KeyRing.from_entries(()), table)
    app = FastAPI()
    install_edge(app, service="trainer", max_body_bytes=1 << 20)
    add_health_routes(app, lambda: {})
    app.include_router(models_router(settings.trainer, registry, access))
    app.include_router(rollouts_router(settings.trainer, controller, access))
    app.include_router(retraining_router(settings.trainer, retraining, access))
    server = BackgroundServer(access.verify(app), "127.0.0.1", 0).start()
    try:
        yield {
            "url": f"http://127.0.0.1:{server.port}", "registry": registry, "clock": clock,
            "signals": signals, "controller": controller, "retraining": retraining,
        }
    finally:
        server.stop()


def runner_for(settings: Settings, world: World, side: dict[str, Any], agree: float = 1.0):
    """A runner whose every wait feeds the rollout traffic and lets the controller decide."""
    transport = Faked(world)
    base = side["url"]
    clients = ServiceClients(
        collector=CollectorClient(base, transport=transport),
        labeler=LabelerClient(base, transport=transport),
        featurizer=FeaturizerClient(base, transport=transport),
        trainer=TrainerClient(base, transport=transport),
        inference=InferenceClient(base, transport=transport),
        modelserver=ModelServerClient(base, model_name=NAME, transport=transport),
    )

    def judged() -> None:  # what the training job's bless stage does in the registry
        registry = side["registry"]
        if registry.get(NAME, 2).state == "candidate":
            verdict = registry.bless if world.job_state == "blessed" else registry.unbless
            verdict(NAME, 2, "judged")

    world.on_job = judged

    def wait(seconds: float) -> None:
        for rollout in side["controller"].listing(NAME, active=True):
            side["signals"].traffic(rollout.id, 60, agree=agree)
        side["clock"].now += 1.0
        side["controller"].tick()

    console = Console(file=open("/dev/null", "w"))  # noqa: SIM115  # progress bars, unseen
    return RetrainingRunner(clients, settings, console=console, sleep=wait)


def test_a_drift_alarm_retrains_and_the_candidate_reaches_production(
    settings: Settings, world: World, trainer_side: dict[str, Any]
) -> None:
    runner = runner_for(settings, world, trainer_side)
    assert runner.check() is None  # no alarm, 10 votes: nothing fires
    world.alarms = ["score", "length"]
    started = runner.check()
    assert started is not None and started.trigger == "drift"
    assert started.why["signals"] == ["length", "score"] and started.why["version"] == 1
    ended = runner.run(started.id)
    assert ended.status == "succeeded", ended.reason
    assert [(s.name, s.status) for s in ended.stages] == [
        (stage, "succeeded") for stage in ("label", "featurize", "train", "bless", "rollout")
    ]
    assert ended.stage("label").detail["label_run"] == "lr-2"
    assert ended.stage("featurize").detail["feature_set"] == "tf-2/lr-2"
    assert ended.stage("bless").detail["version"] == 2
    assert ended.stage("rollout").detail["phase"] == "production"
    assert trainer_side["registry"].production(NAME).version == 2
    label_body = next(b for m, p, b in world.asked if (m, p) == ("POST", "/v1/label-runs"))
    assert label_body["strategy"] == "majority"  # the production model's label run's
    job_body = next(b for m, p, b in world.asked if (m, p) == ("POST", "/v1/jobs"))
    assert job_body == {
        "label_run": "lr-2", "trials": 3, "time_budget_s": 120.0, "auto_promote": False,
        "first_trial": "production", "behaviour_margin": 0.07,
    }
    rollout = trainer_side["controller"].get(ended.stage("rollout").detail["rollout"])
    assert rollout.trigger == f"retraining:{ended.id}" and rollout.first_canary_at


def test_a_bad_candidate_is_rolled_back_and_the_run_fails(
    settings: Settings, world: World, trainer_side: dict[str, Any]
) -> None:
    runner = runner_for(settings, world, trainer_side, agree=0.5)
    world.votes = 70  # 70 new votes since the production model's label run read none
    started = runner.check()
    assert started is not None and started.trigger == "new_votes"
    ended = runner.run(started.id)
    assert ended.status == "failed" and ended.reason.startswith("rolled back")
    assert trainer_side["registry"].get(NAME, 2).state == "rolled_back"
    assert trainer_side["registry"].production(NAME).version == 1


def test_an_unblessed_candidate_ends_the_run_at_bless(
    settings: Settings, world: World, trainer_side: dict[str, Any]
) -> None:
    world.job_state = "unblessed"
    runner = runner_for(settings, world, trainer_side)
    started = runner.request("manual")
    ended = runner.run(started.id)
    assert ended.status == "failed" and "version 2 is unblessed: judged" in ended.reason
    assert [s.name for s in ended.stages][-1] == "bless"
    assert not trainer_side["controller"].listing(NAME)


def test_a_stop_takes_effect_at_the_next_stage_boundary(
    settings: Settings, world: World, trainer_side: dict[str, Any]
) -> None:
    runner = runner_for(settings, world, trainer_side)
    started = runner.request("schedule")
    retraining = trainer_side["retraining"]
    world.on_label = lambda: retraining.stop(started.id, actor="carol", reason="bad votes")
    ended = runner.run(started.id)
    assert (ended.status, ended.reason) == ("stopped", "carol: bad votes")
    assert [(s.name, s.status) for s in ended.stages] == [
        ("label", "succeeded"), ("featurize", "stopped")
    ]
    assert runner.request("schedule") is None  # the cooldown counts the stopped run


def test_an_interrupted_runner_fails_its_stage_so_the_run_blocks_nothing(
    settings: Settings, world: World, trainer_side: dict[str, Any]
) -> None:
    runner = runner_for(settings, world, trainer_side)
    started = runner.request("manual")

    def interrupt() -> None:
        raise KeyboardInterrupt

    world.on_label = interrupt
    with pytest.raises(KeyboardInterrupt):
        runner.run(started.id)
    ended = trainer_side["retraining"].get(started.id)
    assert ended.status == "failed" and ended.reason == "the runner was interrupted"
    assert [(s.name, s.status) for s in ended.stages] == [("label", "failed")]


def test_the_watchers_health_routes(trainer_side: dict[str, Any]) -> None:
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from mlcycle.cli.retraining import watch_health_app

    clients = runner_for(load_settings(), World(), trainer_side).clients
    with TestClient(watch_health_app(clients)) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").json()["checks"] == {"trainer": True}
    down = replace(clients, trainer=TrainerClient("http://127.0.0.1:9"))  # nothing listens
    with TestClient(watch_health_app(down)) as http:
        assert http.get("/readyz").status_code == 503


def test_a_drift_cycle_is_timed_from_the_alarm_to_the_canary_and_to_production(
    settings: Settings, world: World, trainer_side: dict[str, Any]
) -> None:
    from mlcycle.local.retraining import cycle_figures

    world.alarms = ["score"]
    runner = runner_for(settings, world, trainer_side)
    ended = runner.run(runner.check().id)
    figures = cycle_figures(ended)
    rollout = trainer_side["controller"].get(ended.stage("rollout").detail["rollout"])
    canary = datetime.fromisoformat(rollout.first_canary_at)
    alarm = datetime(2027, 1, 1, tzinfo=UTC)  # the alarming signal's `since`
    assert figures["alarm_to_canary_s"] == (canary - alarm).total_seconds()
    promoted = datetime.fromisoformat(rollout.finished_at)
    assert figures["canary_to_production_s"] == (promoted - canary).total_seconds() > 0
    assert cycle_figures(ended.model_copy(update={"stages": ended.stages[:4]})) == {
        "alarm_to_canary_s": None, "canary_to_production_s": None
    }


def test_watch_checks_each_round_and_drives_what_starts(
    settings: Settings, world: World, trainer_side: dict[str, Any]
) -> None:
    runner = runner_for(settings, world, trainer_side)
    feed = runner.sleep
    rounds: list[float] = []

    def between_rounds(seconds: float) -> None:
        if seconds == 7.0:  # the watch's own wait, not a poll inside a run
            rounds.append(seconds)
            world.alarms = ["positive_rate"]  # the alarm comes up after the first round
        else:
            feed(seconds)

    runner.sleep = between_rounds
    runner.watch(7.0, rounds=3)
    assert rounds == [7.0, 7.0]
    (ended, *_) = trainer_side["retraining"].overview(NAME).runs
    assert (ended.trigger, ended.status) == ("drift", "succeeded")
    assert trainer_side["registry"].production(NAME).version == 2
