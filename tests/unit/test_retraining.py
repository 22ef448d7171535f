"""The retraining policy on the real store and registry: triggers, cooldown, budget, stages.

A fake clock moves time; every refusal reason is asked for, and each leaves a
``skipped`` run saying why. The rollout stage starts a real rollout on the registry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.common.errors import Conflict, InvalidInput, NotFound
from mlcycle.common.settings import load_settings
from mlcycle.common.store import VOTES
from mlcycle.common.store.sqlite import SqliteStore
from mlcycle.contracts.retraining import STAGES, RetrainingPolicy, RetrainingRun
from mlcycle.contracts.rollouts import RolloutPolicy
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.retraining import Retraining, RetrainingRefused
from mlcycle.trainer.retraining_policy import load_policy
from mlcycle.trainer.rollout_signals import NoSignals
from mlcycle.trainer.rollouts import RolloutController
from tests.fixtures.registry import NAME, Clock, register

HOUR = 3600.0
POLICY = RetrainingPolicy(new_votes=100, cooldown_s=6 * HOUR, max_runs_per_day=2)


@pytest.fixture
def registry(empty_registry: ModelRegistry) -> ModelRegistry:
    for version in (1, 2, 3):
        register(empty_registry, version)
    empty_registry.bless(NAME, 1, "first")
    empty_registry.promote(NAME, 1, "first model", actor="alice")
    empty_registry.bless(NAME, 2, "beats production")
    return empty_registry


@pytest.fixture
def rollouts(registry: ModelRegistry, sqlite_store: SqliteStore, clock: Clock) -> RolloutController:
    return RolloutController(registry, sqlite_store, NoSignals(), clock=clock)


@pytest.fixture
def retraining(
    sqlite_store: SqliteStore, registry: ModelRegistry, rollouts: RolloutController, clock: Clock
) -> Retraining:
    return Retraining(sqlite_store, POLICY, registry=registry, rollouts=rollouts, clock=clock)


def refused(retraining: Retraining, trigger: str = "schedule", **kw) -> RetrainingRun:
    with pytest.raises(RetrainingRefused) as caught:
        retraining.request(NAME, trigger, actor="cron", **kw)  # type: ignore[arg-type]
    assert caught.value.http_status == 409
    return caught.value.run


def finish(retraining: Retraining, run: RetrainingRun, clock: Clock) -> RetrainingRun:
    """Report every stage up to bless succeeded, then fail the rollout stage's start."""
    for stage in STAGES[:-1]:
        detail = {"version": 2} if stage == "bless" else {}
        clock.now += 60
        run = retraining.report(run.id, stage, "succeeded", detail=detail, actor="runner")
    return retraining.report(run.id, "rollout", "stopped", actor="runner")


def test_a_run_starts_and_another_is_refused_while_it_runs(retraining: Retraining) -> None:
    run = retraining.request(NAME, "manual", actor="alice", votes=500)
    assert (run.status, run.trigger, run.votes_at_start, run.actor) == (
        "running", "manual", 500, "alice"
    )
    skipped = refused(retraining)
    assert (skipped.status, skipped.refusal) == ("skipped", "running")
    assert run.id in skipped.reason
    assert retraining.overview(NAME).running == run.id


def test_cooldown_refuses_until_it_ends_and_says_when(
    retraining: Retraining, clock: Clock
) -> None:
    run = retraining.request(NAME, "manual", actor="alice")
    finish(retraining, run, clock)
    clock.now = 1_800_000_000.0 + 2 * HOUR
    skipped = refused(retraining)
    assert skipped.refusal == "cooldown"
    assert skipped.next_allowed_at == "2027-01-15T14:00:00+00:00"  # start + 6 h
    assert "2027-01-15T14:00:00+00:00" in skipped.reason
    assert retraining.overview(NAME).next_allowed_at == skipped.next_allowed_at
    clock.now = 1_800_000_000.0 + 6 * HOUR + 1
    assert retraining.request(NAME, "schedule", actor="cron").status == "running"


def test_the_daily_budget_counts_runs_started_in_the_last_24_hours(
    retraining: Retraining, clock: Clock
) -> None:
    start = clock.now
    for hours in (0, 7):
        clock.now = start + hours * HOUR
        finish(retraining, retraining.request(NAME, "schedule", actor="cron"), clock)
    clock.now = start + 14 * HOUR  # past the cooldown, but two runs in 24 h
    skipped = refused(retraining)
    assert skipped.refusal == "budget" and "2 runs started in the last 24 hours" in skipped.reason
    assert skipped.next_allowed_at == "2027-01-16T08:00:00+00:00"  # the first run + 24 h
    assert retraining.overview(NAME).runs_last_day == 2
    clock.now = start + 24 * HOUR + 1
    assert retraining.request(NAME, "schedule", actor="cron").status == "running"


def test_an_admin_may_force_past_cooldown_and_budget_but_not_a_running_run(
    retraining: Retraining, clock: Clock
) -> None:
    finish(retraining, retraining.request(NAME, "manual", actor="alice"), clock)
    forced = retraining.request(NAME, "manual", actor="admin", force=True)
    assert forced.status == "running"
    assert refused(retraining, "manual", force=True).refusal == "running"


def test_new_votes_count_from_the_last_run_and_need_the_policys_number(
    retraining: Retraining, sqlite_store: SqliteStore, clock: Clock
) -> None:
    sqlite_store.upsert(VOTES, [{"id": f"v{i}", "item_id": "c", "label": 0} for i in range(30)])
    skipped = refused(retraining, "new_votes")  # counted from the store: 30, no baseline
    assert skipped.refusal == "no_trigger"
    assert "30 new votes" in skipped.reason and "retrains at 100" in skipped.reason
    run = retraining.request(NAME, "new_votes", actor="watch", votes=150)
    assert run.why["new_votes"] == 150 and run.votes_at_start == 150
    finish(retraining, run, clock)
    clock.now += 7 * HOUR
    assert refused(retraining, "new_votes", votes=249).why["new_votes"] == 99
    assert retraining.overview(NAME).votes_baseline == 150
    assert retraining.request(NAME, "new_votes", actor="watch", votes=250).status == "running"


def test_the_baseline_before_any_run_is_what_the_production_models_label_run_read(
    retraining: Retraining, sqlite_store: SqliteStore
) -> None:
    from mlcycle.contracts.label_runs import LabelRun, RunStats, VoteCounts
    from mlcycle.contracts.repositories.label_runs import LabelRuns

    stats = RunStats(votes=VoteCounts(read=1200, lf=400, used=1200))
    LabelRuns(sqlite_store).save(LabelRun(id="lr-1", task=NAME, status="succeeded", stats=stats))
    assert retraining.overview(NAME).votes_baseline == 800
    assert refused(retraining, "new_votes", votes=850).why["new_votes"] == 50


def test_new_votes_off_and_drift_evidence(sqlite_store: SqliteStore, clock: Clock) -> None:
    policy = RetrainingPolicy(new_votes=None, drift_signals=("score", "positive_rate"))
    retraining = Retraining(sqlite_store, policy, clock=clock)
    assert "does not retrain on new votes" in refused(retraining, "new_votes", votes=10**6).reason
    assert "must name its alarming signals" in refused(retraining, "drift").reason
    clock.now += 1
    off = refused(retraining, "drift", why={"signals": ["length"]})
    assert "no alarming signal (length)" in off.reason
    run = retraining.request(NAME, "drift", actor="watch", why={"signals": ["length", "score"]})
    assert run.why["signals"] == ["length", "score"]


def test_a_repeated_refusal_is_one_record_that_counts(
    retraining: Retraining, clock: Clock
) -> None:
    retraining.request(NAME, "manual", actor="alice")
    first = refused(retraining)
    for _ in range(3):
        clock.now += 60
        again = refused(retraining)
    assert again.id == first.id and again.repeats == 3
    assert "at" in again.why["latest"]
    statuses = sorted(r.status for r in retraining.overview(NAME).runs)
    assert statuses == ["running", "skipped"]


def test_stages_go_in_order_and_a_blessed_version_rolls_out(
    retraining: Retraining, registry: ModelRegistry, rollouts: RolloutController
) -> None:
    run = retraining.request(NAME, "manual", actor="alice")
    with pytest.raises(Conflict, match="next stage .* is label, not train"):
        retraining.report(run.id, "train", "running", actor="runner")
    retraining.report(run.id, "label", "running", actor="runner")
    with pytest.raises(Conflict, match="stage label .* still running"):
        retraining.report(run.id, "featurize", "running", actor="runner")
    run = retraining.report(
        run.id, "label", "succeeded", detail={"label_run": "lr-2"}, actor="runner"
    )
    assert run.stages[0].detail == {"label_run": "lr-2"} and run.stages[0].finished_at
    retraining.report(run.id, "featurize", "succeeded", actor="runner")
    retraining.report(run.id, "train", "succeeded", detail={"job": "job-3"}, actor="runner")
    with pytest.raises(InvalidInput, match="version 3 is unblessed|version 3 is candidate"):
        retraining.report(run.id, "bless", "succeeded", detail={"version": 3}, actor="runner")
    retraining.report(run.id, "bless", "succeeded", detail={"version": 2}, actor="runner")
    with pytest.raises(InvalidInput, match="blessed version 2, not 3"):
        retraining.report(run.id, "rollout", "running", detail={"version": 3}, actor="runner")
    with pytest.raises(Conflict, match="starts `running`"):
        retraining.report(run.id, "rollout", "succeeded", actor="runner")
    run = retraining.report(run.id, "rollout", "running", actor="runner")
    rollout = rollouts.get(run.stage("rollout").detail["rollout"])
    assert (rollout.candidate, rollout.trigger) == (2, f"retraining:{run.id}")
    assert registry.get(NAME, 2).state == "shadow"
    run = retraining.report(
        run.id, "rollout", "running", detail={"phase": "canary", "rollout": "other"}, actor="r"
    )
    assert run.stage("rollout").detail["rollout"] == rollout.id  # news never renames it
    with pytest.raises(Conflict, match="is shadow .*not in production"):
        retraining.report(run.id, "rollout", "succeeded", actor="runner")
    while rollouts.get(rollout.id).phase != "production":
        rollouts.force(rollout.id, actor="carol", reason="the test moves it on")
    run = retraining.report(
        run.id, "rollout", "succeeded", detail={"phase": "production"}, actor="runner"
    )
    assert (run.status, run.finished_at is not None) == ("succeeded", True)
    with pytest.raises(Conflict, match="is succeeded: it takes no more"):
        retraining.report(run.id, "rollout", "running", actor="runner")


def test_a_failed_stage_fails_the_run_with_its_reason(retraining: Retraining) -> None:
    run = retraining.request(NAME, "manual", actor="alice")
    for stage in ("label", "featurize", "train"):
        retraining.report(run.id, stage, "succeeded", actor="runner")
    run = retraining.report(
        run.id, "bless", "failed", error="not blessed: dev roc_auc below production's",
        actor="runner",
    )
    assert run.status == "failed" and run.reason.startswith("not blessed")


def test_a_rollout_that_cannot_start_fails_the_stage(
    retraining: Retraining, registry: ModelRegistry, rollouts: RolloutController
) -> None:
    rollouts.start(NAME, 2, reason="by hand", actor="alice")  # one rollout at a time
    registry.bless(NAME, 3, "beats production")
    run = retraining.request(NAME, "manual", actor="alice")
    for stage in ("label", "featurize", "train"):
        retraining.report(run.id, stage, "succeeded", actor="runner")
    retraining.report(run.id, "bless", "succeeded", detail={"version": 3}, actor="runner")
    run = retraining.report(run.id, "rollout", "running", actor="runner")
    assert run.status == "failed" and "the rollout did not start" in run.reason
    assert run.stage("rollout").status == "failed"


def test_stop_is_carried_out_at_the_next_boundary_and_aborts_a_running_rollout(
    retraining: Retraining, registry: ModelRegistry, rollouts: RolloutController
) -> None:
    run = retraining.request(NAME, "manual", actor="alice")
    retraining.report(run.id, "label", "running", actor="runner")
    run = retraining.stop(run.id, actor="carol", reason="bad data upstream")
    assert run.stop_requested and run.status == "running"
    retraining.report(run.id, "label", "succeeded", actor="runner")
    with pytest.raises(Conflict, match="asked to stop .*carol: bad data upstream"):
        retraining.report(run.id, "featurize", "running", actor="runner")
    run = retraining.report(run.id, "featurize", "stopped", actor="runner")
    assert (run.status, run.reason) == ("stopped", "carol: bad data upstream")
    with pytest.raises(Conflict, match="nothing to stop"):
        retraining.stop(run.id, actor="carol", reason="again")

    second = retraining.request(NAME, "manual", actor="alice", force=True)
    for stage in ("label", "featurize", "train"):
        retraining.report(second.id, stage, "succeeded", actor="runner")
    retraining.report(second.id, "bless", "succeeded", detail={"version": 2}, actor="runner")
    second = retraining.report(second.id, "rollout", "running", actor="runner")
    retraining.stop(second.id, actor="carol", reason="not today")
    rollout = rollouts.get(second.stage("rollout").detail["rollout"])
    assert (rollout.phase, rollout.status) == ("aborted", "finished")
    assert registry.get(NAME, 2).state == "rolled_back"


def test_an_abandoned_run_blocks_nothing(retraining: Retraining, clock: Clock) -> None:
    run = retraining.request(NAME, "manual", actor="alice")
    clock.now += POLICY.abandon_after_s + 1
    assert retraining.request(NAME, "schedule", actor="cron").status == "running"
    old = retraining.get(run.id)
    assert old.status == "failed" and old.reason.startswith("abandoned")


def test_unknown_runs_and_the_policy_file(tmp_path: Path, retraining: Retraining) -> None:
    with pytest.raises(NotFound, match="no retraining run"):
        retraining.get("rt-20260101T000000-abcdef")
    path = tmp_path / "policy.json"
    path.write_text('{"cooldown_s": 60, "rollout": {"canary_steps": [50, 100]}}')
    policy = load_policy(load_settings(retraining_policy_file=path).rollouts)
    assert policy.cooldown_s == 60 and policy.rollout == RolloutPolicy(canary_steps=(50, 100))
    path.write_text('{"cooldown": 60}')
    with pytest.raises(InvalidInput, match="policy.json"):
        load_policy(load_settings(retraining_policy_file=path).rollouts)
    with pytest.raises(ValueError, match="abandon_after_s must exceed"):
        RetrainingPolicy(train_time_budget_s=7200, abandon_after_s=3600)
