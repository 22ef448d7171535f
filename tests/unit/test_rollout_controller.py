"""The rollout controller on the real registry (SQLite store) with synthetic live evidence.

The live signals are a stand-in that keeps pooled evidence in the library's
MemoryEvidenceStore (whose contract tests also run against Redis) and lets each test
set drift, realized quality and the model server's state.
"""

from __future__ import annotations

import pytest

from mlcycle.common.errors import Conflict, ValidationFailed
from mlcycle.common.settings import Settings
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.models import ModelEvent
from mlcycle.contracts.rollouts import RolloutPolicy
from mlcycle.contracts.serving import read_routing_table
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.rollout_signals import NoSignals
from mlcycle.trainer.rollouts import RolloutController
from tests.fixtures.registry import NAME, Clock, Signals, register

POLICY = RolloutPolicy(min_samples=50, canary_steps=(10.0, 50.0, 100.0))


@pytest.fixture
def registry(empty_registry: ModelRegistry) -> ModelRegistry:
    for version in (1, 2):
        register(empty_registry, version, bless="beats production")
    empty_registry.promote(NAME, 1, "first model", actor="alice")
    return empty_registry


@pytest.fixture
def signals(clock: Clock) -> Signals:
    return Signals(clock)


@pytest.fixture
def controller(registry: ModelRegistry, sqlite_store: SqliteStore, signals: Signals, clock: Clock):
    return RolloutController(
        registry, sqlite_store, signals, default_policy=POLICY, clock=clock, settle_s=0.0
    )


def tick(controller: RolloutController, clock: Clock, signals: Signals, **traffic) -> str:
    """Some traffic, a second later a tick; the rollout's phase and share after it."""
    rollout_id = controller.listing(NAME)[0].id
    if traffic:
        signals.traffic(rollout_id, **traffic)
    clock.now += 1.0
    controller.tick()
    rollout = controller.get(rollout_id)
    return f"{rollout.phase} {rollout.canary_percent:g}"


def test_a_good_candidate_goes_through_shadow_and_every_canary_step_to_production(
    controller: RolloutController, registry: ModelRegistry, signals: Signals, clock: Clock,
    settings: Settings, events: list[ModelEvent],
) -> None:
    rollout = controller.start(NAME, 2, reason="retrained", actor="bob")
    assert registry.get(NAME, 2).state == "shadow"
    routing = read_routing_table(settings.trainer.models_dir)
    assert routing is not None and routing.models[NAME].shadow == 2
    assert tick(controller, clock, signals, n=20) == "shadow 0"  # too few pairs yet
    assert tick(controller, clock, signals, n=40) == "canary 10"
    assert read_routing_table(settings.trainer.models_dir).models[NAME].canary_share == 0.1
    assert tick(controller, clock, signals) == "canary 10"  # no new pairs at this step
    assert tick(controller, clock, signals, n=60) == "canary 50"
    assert tick(controller, clock, signals, n=60) == "canary 100"
    assert tick(controller, clock, signals, n=60) == "production 100"
    assert registry.production(NAME).version == 2
    assert registry.get(NAME, 1).state == "archived"
    done = controller.get(rollout.id)
    assert done.status == "finished"
    actions = [d.action for d in done.decisions if d.action != "hold"]
    assert actions == ["start", "advance", "advance", "advance", "promote"]
    steps = [(h.action, h.actor, h.rollout) for h in registry.get(NAME, 2).history[2:]]
    assert steps[0] == ("shadowed", "bob", rollout.id)
    assert [s[0] for s in steps[1:]] == ["canaried", "promoted"]
    assert all(s[1] == f"rollout:{rollout.id}" for s in steps[1:])
    promoted = registry.get(NAME, 2).history[-1]
    assert promoted.evidence is not None and promoted.evidence.pairs >= 200
    assert [e.event for e in events][-2:] == ["archived", "promoted"]


def test_a_candidate_that_disagrees_is_rolled_back(
    controller: RolloutController, registry: ModelRegistry, signals: Signals, clock: Clock,
    settings: Settings,
) -> None:
    rollout = controller.start(NAME, 2, reason="retrained", actor="bob")
    assert tick(controller, clock, signals, n=60, agree=0.5) == "rolled_back 0"
    assert registry.get(NAME, 2).state == "rolled_back"
    assert registry.production(NAME).version == 1
    assert read_routing_table(settings.trainer.models_dir).models[NAME].shadow is None
    last = controller.get(rollout.id).decisions[-1]
    assert last.action == "rollback" and "agreement" in last.reason
    assert last.evidence is not None and last.evidence.agreement == pytest.approx(0.5)


def test_a_failing_canary_is_rolled_back(
    controller: RolloutController, signals: Signals, clock: Clock
) -> None:
    controller.start(NAME, 2, reason="retrained", actor="bob", policy=POLICY.model_copy(
        update={"skip_shadow": True}))
    assert tick(controller, clock, signals, n=60, errors=30) == "rolled_back 0"


def test_missing_data_holds_and_never_promotes(
    controller: RolloutController, signals: Signals, clock: Clock
) -> None:
    rollout = controller.start(NAME, 2, reason="retrained", actor="bob")
    signals.server_up = False
    for _ in range(5):
        assert tick(controller, clock, signals, n=100) == "shadow 0"
    holds = [d for d in controller.get(rollout.id).decisions if d.action == "hold"]
    assert len(holds) == 1  # a hold for the same kind of reason is recorded once
    assert "missing data" in holds[0].reason and holds[0].hold == "missing_data"
    signals.server_up = True
    assert tick(controller, clock, signals, n=60) == "shadow 0"  # recovering: counts afresh
    assert controller.get(rollout.id).decisions[-1].reason.startswith("recovering")
    assert controller.get(rollout.id).decisions[-1].hold == "recovering"
    assert tick(controller, clock, signals) == "canary 10"
    clock.now += POLICY.evidence_max_age_s + 5  # no replica reported since: stale
    assert tick(controller, clock, signals) == "canary 10"
    assert "missing data" in controller.get(rollout.id).decisions[-1].reason


def test_without_live_signals_every_rollout_holds_on_missing_data(
    registry: ModelRegistry, sqlite_store: SqliteStore, clock: Clock
) -> None:
    controller = RolloutController(
        registry, sqlite_store, NoSignals(), default_policy=POLICY, clock=clock, settle_s=0.0
    )
    rollout = controller.start(NAME, 2, reason="retrained", actor="bob")
    for _ in range(3):
        clock.now += 1.0
        controller.tick()
    seen = controller.get(rollout.id)
    assert (seen.phase, registry.get(NAME, 2).state) == ("shadow", "shadow")
    assert [d.action for d in seen.decisions[1:]] == ["hold"]
    assert "missing data" in seen.decisions[-1].reason
    assert controller.comparison(seen).model_server_up is False


def test_a_hold_of_the_same_kind_is_recorded_once_whatever_its_figures(
    controller: RolloutController, signals: Signals, clock: Clock
) -> None:
    strict = POLICY.model_copy(update={"require_quality": True})
    rollout = controller.start(NAME, 2, reason="retrained", actor="bob", policy=strict)
    for share in ("canary 10", "canary 50", "canary 100"):
        assert tick(controller, clock, signals, n=60) == share
    for _ in range(3):  # more pairs each tick, and no realized quality yet
        assert tick(controller, clock, signals, n=60) == "canary 100"
    holds = [d for d in controller.get(rollout.id).decisions if d.action == "hold"]
    assert [d.hold for d in holds] == ["quality"]
    assert "waiting for realized quality" in holds[0].reason


def test_an_admin_pauses_resumes_forces_and_aborts(
    controller: RolloutController, registry: ModelRegistry, signals: Signals, clock: Clock
) -> None:
    rollout = controller.start(NAME, 2, reason="retrained", actor="bob")
    controller.pause(rollout.id, actor="carol", reason="looking into it")
    assert tick(controller, clock, signals, n=100) == "shadow 0"  # paused: no decision
    controller.resume(rollout.id, actor="carol", reason="fine")
    controller.force(rollout.id, actor="carol", reason="skip the wait")
    assert controller.get(rollout.id).phase == "canary"
    assert controller.get(rollout.id).decisions[-1].action == "force"
    controller.abort(rollout.id, actor="carol", reason="not now")
    done = controller.get(rollout.id)
    assert (done.phase, done.status) == ("aborted", "finished")
    assert registry.get(NAME, 2).state == "rolled_back"
    with pytest.raises(Conflict, match="finished"):
        controller.pause(rollout.id, actor="carol", reason="too late")


def test_one_rollout_at_a_time_and_only_against_a_production_version(
    controller: RolloutController, registry: ModelRegistry
) -> None:
    with pytest.raises(ValidationFailed, match="already in production"):
        controller.start(NAME, 1, reason="again", actor="bob")
    controller.start(NAME, 2, reason="retrained", actor="bob")
    with pytest.raises(Conflict, match="still running"):
        controller.start(NAME, 2, reason="twice", actor="bob")


def test_a_manual_promote_during_a_rollout_finishes_it(
    controller: RolloutController, registry: ModelRegistry, signals: Signals, clock: Clock
) -> None:
    rollout = controller.start(NAME, 2, reason="retrained", actor="bob")
    registry.promote(NAME, 2, "admin knows best", actor="carol")
    tick(controller, clock, signals)
    done = controller.get(rollout.id)
    assert (done.phase, done.status, done.decisions[-1].actor) == (
        "production", "finished", "registry"
    )


def test_a_step_counts_only_the_pairs_that_arrive_once_the_step_before_has_settled(
    registry: ModelRegistry, sqlite_store: SqliteStore, signals: Signals, clock: Clock
) -> None:
    controller = RolloutController(
        registry, sqlite_store, signals, default_policy=POLICY, clock=clock, settle_s=3.0
    )
    rollout = controller.start(NAME, 2, reason="retrained", actor="bob")
    assert tick(controller, clock, signals, n=10) == "shadow 0"  # settling: no decision yet
    assert [d.action for d in controller.get(rollout.id).decisions] == ["start"]
    assert tick(controller, clock, signals, n=30) == "shadow 0"
    assert tick(controller, clock, signals, n=30) == "shadow 0"  # settled: counts from 70
    assert tick(controller, clock, signals, n=49) == "shadow 0"
    assert tick(controller, clock, signals, n=1) == "canary 10"
    # The shadow's last pairs, flushed after the first canary step began, do not count for it.
    assert tick(controller, clock, signals, n=150) == "canary 10"
    assert tick(controller, clock, signals) == "canary 10"
    assert tick(controller, clock, signals) == "canary 10"  # settled now: counts from 270
    assert tick(controller, clock, signals, n=49) == "canary 10"
    assert tick(controller, clock, signals, n=1) == "canary 50"
    settles = [d for d in controller.get(rollout.id).decisions if d.action == "settle"]
    assert [d.evidence.pairs for d in settles if d.evidence is not None] == [70, 270]
