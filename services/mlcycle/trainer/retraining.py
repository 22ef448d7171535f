"""Retraining runs: the one place the retraining policy is enforced.

A runner (tooling: ``mlcycle retrain``) checks the triggers, asks here for a run
(:meth:`Retraining.request`), drives its stages through the services' APIs and
reports each one (:meth:`Retraining.report`). This service decides whether a run
may start (one at a time, the trigger's evidence, the cooldown, the daily budget)
and records a refusal as a ``skipped`` run naming the rule, so an operator sees why
nothing happened. It starts the candidate's rollout itself when the runner reports
the rollout stage, on the version the run's bless stage blessed, so a run needs no
admin key and its rollout names the run as its trigger. An admin's stop
(:meth:`Retraining.stop`) is carried out by the runner at the next stage boundary,
and aborts the candidate's rollout at once if one is running.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from mlcycle.common.errors import Conflict, InvalidInput, MlcycleError
from mlcycle.common.store import VOTES, Store
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.repositories.retraining_runs import RetrainingRuns
from mlcycle.contracts.retraining import (
    STAGE_ENDS,
    STAGES,
    Refusal,
    RetrainingOverview,
    RetrainingPolicy,
    RetrainingRun,
    RetrainingStage,
    StageName,
    StageStatus,
    Trigger,
)
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.retraining_policy import allowed_at, epoch, iso, refusal_of, runs_last_day
from mlcycle.trainer.rollouts import RolloutController

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class RetrainingRefused(Conflict):
    """The policy refused a run (409); ``run`` is the ``skipped`` record of the refusal."""

    def __init__(self, run: RetrainingRun) -> None:
        details = {
            "run": run.id,
            "refusal": run.refusal,
            "next_allowed_at": run.next_allowed_at,
            "skipped": run.to_document(),
        }
        super().__init__(f"retraining refused: {run.reason}", details=details)
        self.run = run


class Retraining:
    """Starts retraining runs under the policy, records their stages, and stops them."""

    def __init__(
        self,
        store: Store,
        policy: RetrainingPolicy | None = None,
        *,
        registry: ModelRegistry | None = None,
        rollouts: RolloutController | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.runs = RetrainingRuns(store)
        self.policy = policy or RetrainingPolicy()
        self.registry = registry
        self.rollouts = rollouts
        self.clock = clock
        self._lock = threading.RLock()

    # -- reading -------------------------------------------------------------------------------

    def get(self, run_id: str) -> RetrainingRun:
        """A run, or NotFound."""
        return self.runs.require(run_id)

    def overview(self, name: str, limit: int = 20) -> RetrainingOverview:
        """The policy, what it allows now, and the newest ``limit`` runs of ``name``."""
        with self._lock:
            runs = self._settle(name)
            now = self.clock()
            started = [r for r in runs if r.started]
            allowed = allowed_at(self.policy, started, now)
            return RetrainingOverview(
                policy=self.policy,
                running=next((r.id for r in runs if r.active), None),
                next_allowed_at=iso(allowed) if allowed > now else None,
                runs_last_day=runs_last_day(started, now),
                votes_baseline=self._votes_baseline(name, started),
                runs=runs[:limit],
            )

    # -- starting ------------------------------------------------------------------------------

    def request(
        self,
        name: str,
        trigger: Trigger,
        *,
        actor: str,
        why: Mapping[str, Any] | None = None,
        votes: int | None = None,
        force: bool = False,
    ) -> RetrainingRun:
        """Start a run of ``name`` for ``trigger``, or record why not and raise
        :class:`RetrainingRefused`. ``votes``: the stored vote count now (counted here when
        None). ``force`` (an admin's) passes over the cooldown and the budget, never over a
        running run or a trigger without its evidence."""
        with self._lock:
            now = self.clock()
            runs = self._settle(name)
            started = [r for r in runs if r.started]
            votes = self.store.count(VOTES) if votes is None else votes
            evidence = dict(why or {})
            baseline = self._votes_baseline(name, started)
            if trigger == "new_votes":
                evidence.setdefault("votes", votes)
                evidence.setdefault("votes_baseline", baseline)
                evidence.setdefault("new_votes", votes - (baseline or 0))
            refusal = refusal_of(self.policy, runs, trigger, evidence, now, force=force)
            run = RetrainingRun(
                id=f"rt-{datetime.fromtimestamp(now, UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}",
                name=name,
                trigger=trigger,
                why=evidence,
                status="running",
                policy=self.policy,
                votes_at_start=votes,
                started_at=iso(now),
                updated_at=iso(now),
                actor=actor,
            )
            if refusal is not None:
                raise RetrainingRefused(self._skip(run, runs, *refusal, now))
            self.runs.save(run)
            log.info("retraining run started", extra={"run": run.id, "trigger": trigger})
            return run

    def _skip(
        self,
        run: RetrainingRun,
        runs: list[RetrainingRun],
        refusal: Refusal,
        reason: str,
        until: float | None,
        now: float,
    ) -> RetrainingRun:
        """Record a refusal; the same refusal of the same trigger again counts on the last one
        (a watcher asking every minute leaves one record, not one a minute)."""
        last = next((r for r in runs if not r.started), None)
        newest = next((r for r in runs if r.started), None)
        run.after_run = newest.id if newest is not None else None
        if (
            last is not None
            and last.trigger == run.trigger
            and last.refusal == refusal
            and last.after_run == run.after_run
        ):
            last.repeats += 1
            last.why = {**last.why, "latest": {"at": iso(now), **run.why}}
            run = last
        run.status, run.refusal, run.reason = "skipped", refusal, reason
        run.next_allowed_at = iso(until) if until is not None else None
        run.updated_at = run.finished_at = iso(now)
        self.runs.save(run)
        log.info("retraining refused", extra={"run": run.id, "refusal": refusal, "reason": reason})
        return run

    def _votes_baseline(self, name: str, started: list[RetrainingRun]) -> int | None:
        """The vote count new votes are counted from: the last run's at its start, else the
        votes the production model's label run read (without labeling functions' votes)."""
        if started and started[0].votes_at_start is not None:
            return started[0].votes_at_start
        production = self.registry.production(name) if self.registry is not None else None
        if production is None or not production.label_run:
            return None
        run = LabelRuns(self.store).get(production.label_run)
        if run is None or run.stats is None:
            return None
        return run.stats.votes.read - run.stats.votes.lf

    def _settle(self, name: str) -> list[RetrainingRun]:
        """Runs of ``name``, newest first, once runs nobody reported on for too long are
        failed as abandoned (their runner died), so they block nothing."""
        runs = self.runs.listing(name)
        now = self.clock()
        for run in runs:
            quiet = now - epoch(run.updated_at)
            if run.active and quiet > run.policy.abandon_after_s:
                self._finish(run, "failed", f"abandoned: no report for {quiet:.0f} s", now)
        return runs

    # -- stages --------------------------------------------------------------------------------

    def report(
        self,
        run_id: str,
        stage: StageName,
        status: StageStatus,
        *,
        detail: Mapping[str, Any] | None = None,
        error: str | None = None,
        actor: str,
    ) -> RetrainingRun:
        """Record that ``stage`` started (``running``; again: a heartbeat with news), or ended.

        Stages go in :data:`STAGES` order. A failed stage fails the run; a stopped one stops
        it; the rollout stage's success (the candidate in production) ends it succeeded.
        Starting the rollout stage starts the rollout of the version the bless stage blessed.
        """
        with self._lock:
            run = self.get(run_id)
            now = self.clock()
            if not run.active:
                raise Conflict(
                    f"retraining run {run_id} is {run.status}: it takes no more stage reports",
                    details={"run": run_id, "status": run.status},
                )
            current = self._stage_for(run, stage, status)
            if current is None:  # a stage starting (or started and ended in one report)
                current = RetrainingStage(name=stage, status="running", started_at=iso(now))
                current.detail = dict(detail or {})
                self._check_start(run, current, status, actor)
                run.stages = [*run.stages, current]
            else:  # news; the rollout a stage started stays the one it names
                started = {k: current.detail[k] for k in ("rollout",) if k in current.detail}
                current.detail = current.detail | dict(detail or {}) | started
            if stage == "bless" and status == "succeeded":
                self._check_blessed(run, current)
            if stage == "rollout" and status == "succeeded":
                self._check_promoted(current)
            if status in STAGE_ENDS:
                current.status, current.finished_at, current.error = status, iso(now), error
                if status != "succeeded" or stage == STAGES[-1]:
                    why = error or (run.stop_reason if status == "stopped" else None)
                    self._finish(run, status, why or f"{stage} {status}", now)
            run.stages = list(run.stages)  # revalidate what changed in place
            run.updated_at = iso(now)
            self.runs.save(run)
            return run

    def _stage_for(
        self, run: RetrainingRun, stage: StageName, status: StageStatus
    ) -> RetrainingStage | None:
        """The running stage the report is about, None for the next stage, else Conflict."""
        last = run.stages[-1] if run.stages else None
        if last is not None and last.status == "running":
            if last.name == stage:
                return last
            raise Conflict(
                f"stage {last.name} of run {run.id} is still running: report its end first",
                details={"run": run.id, "running": last.name},
            )
        expected = STAGES[len(run.stages)]
        if stage != expected:
            raise Conflict(
                f"the next stage of run {run.id} is {expected}, not {stage}",
                details={"run": run.id, "expected": expected},
            )
        if run.stop_requested and status != "stopped":
            raise Conflict(
                f"run {run.id} was asked to stop ({run.stop_reason}): report {stage} stopped",
                details={"run": run.id, "stop_requested": True},
            )
        return None

    def _check_start(
        self, run: RetrainingRun, stage: RetrainingStage, status: StageStatus, actor: str
    ) -> None:
        """Starting the rollout stage starts the rollout of the blessed version."""
        if stage.name != "rollout" or status == "stopped":
            return
        if status != "running":
            raise Conflict(
                f"the rollout stage of run {run.id} starts `running`: that starts the rollout",
                details={"run": run.id},
            )
        blessed = run.stage("bless")
        version = blessed.detail.get("version") if blessed is not None else None
        if stage.detail.get("version", version) != version:
            raise InvalidInput(
                f"run {run.id} blessed version {version}, not {stage.detail.get('version')}",
                details={"run": run.id, "blessed": version},
            )
        if self.rollouts is None:
            raise Conflict("this trainer has no rollout controller to roll the candidate out")
        try:
            rollout = self.rollouts.start(
                run.name,
                int(version),
                reason=f"retraining {run.id}: {run.trigger}",
                actor=actor,
                policy=run.policy.rollout,
                trigger=f"retraining:{run.id}",
            )
        except MlcycleError as exc:  # e.g. another rollout runs: the stage fails, recorded
            stage.status, stage.error = "failed", f"the rollout did not start: {exc}"
            self._finish(run, "failed", stage.error, self.clock())
            return
        stage.detail = stage.detail | {"version": version, "rollout": rollout.id}

    def _check_promoted(self, stage: RetrainingStage) -> None:
        """A rollout stage succeeds only once its rollout put the candidate in production."""
        rollout_id = stage.detail.get("rollout")
        if self.rollouts is None or not rollout_id:
            raise Conflict("the rollout stage names no rollout of this trainer")
        rollout = self.rollouts.get(str(rollout_id))
        if rollout.phase != "production":
            raise Conflict(
                f"rollout {rollout.id} is {rollout.phase} ({rollout.status}), not in production",
                details={"rollout": rollout.id, "phase": rollout.phase},
            )

    def _check_blessed(self, run: RetrainingRun, stage: RetrainingStage) -> None:
        version = stage.detail.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidInput("a succeeded bless stage names its version (detail.version)")
        if self.registry is not None:
            state = self.registry.get(run.name, version).state
            if state != "blessed":
                raise InvalidInput(
                    f"model {run.name!r} version {version} is {state}, not blessed",
                    details={"version": version, "state": state},
                )

    # -- stopping ------------------------------------------------------------------------------

    def stop(self, run_id: str, *, actor: str, reason: str) -> RetrainingRun:
        """Ask the run to stop at its next stage boundary; abort its rollout if one runs."""
        with self._lock:
            run = self.get(run_id)
            if not run.active:
                raise Conflict(
                    f"retraining run {run_id} is {run.status}: nothing to stop",
                    details={"run": run_id, "status": run.status},
                )
            run.stop_requested, run.stop_reason = True, f"{actor}: {reason}"
            run.updated_at = iso(self.clock())
            rollout_stage = run.stage("rollout")
            rollout_id = rollout_stage.detail.get("rollout") if rollout_stage else None
            if rollout_id and self.rollouts is not None:
                rollout = self.rollouts.get(str(rollout_id))
                if rollout.active:
                    self.rollouts.abort(
                        rollout.id, actor=actor, reason=f"retraining run {run_id} stopped: {reason}"
                    )
            self.runs.save(run)
            return run

    def _finish(self, run: RetrainingRun, status: str, reason: str, now: float) -> None:
        run.status = status  # type: ignore[assignment]  # one of the final statuses
        run.reason, run.finished_at, run.updated_at = reason, iso(now), iso(now)
        self.runs.save(run)
        log.info("retraining run ended", extra={"run": run.id, "status": status, "why": reason})
