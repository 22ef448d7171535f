"""The retraining runner: checks the triggers and drives retraining runs through the services.

The trainer owns the runs and enforces the policy; this runner only asks and reports.
:meth:`RetrainingRunner.check` reads the triggers (a drift alarm on the production
version, from the inference service's monitor; new votes, from the collector's counts)
and asks the trainer for a run when one fires. :meth:`RetrainingRunner.run` drives a
run's stages one after the other, each through the services' APIs with the same
functions ``mlcycle demo`` uses (:mod:`mlcycle.local.pipeline`), and reports each to the
trainer::

    label run (the production model's strategy) -> featurize
      -> train (production's hyper-parameters first, no auto-promotion)
      -> bless (the job's verdict) -> rollout (shadow -> canary steps -> production)

A stop an admin asked for is carried out at the next stage boundary; a rollout the
stop aborted ends the run ``stopped``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import JsonValue
from rich.console import Console

from mlcycle.clients import ServiceClients
from mlcycle.clients.trainer import RetrainingRefused, TrainingJob
from mlcycle.common.errors import InvalidInput, MlcycleError, Unavailable
from mlcycle.common.settings import Settings
from mlcycle.common.store import VOTES
from mlcycle.contracts.label_runs import RunParams
from mlcycle.contracts.retraining import STAGES, RetrainingPolicy, RetrainingRun
from mlcycle.contracts.rollouts import Rollout
from mlcycle.local.pipeline import featurize_via_api, label_via_api, train_via_api

log = logging.getLogger(__name__)

# What a stage reports of itself, and a trigger's evidence: small JSON objects.
Detail = dict[str, JsonValue]
# A rollout being followed is reported alive at least this often, news or not.
HEARTBEAT_S = 60.0


@dataclass
class Made:
    """What a run's stages made so far, for the stages after them."""

    label_run: str = ""
    job: TrainingJob | None = None
    version: int = 0


class StageFailed(Exception):
    """A stage ended without what the next one needs; the message says why."""


class RetrainingRunner:
    """Checks the retraining triggers and drives the runs the trainer lets start."""

    def __init__(
        self,
        clients: ServiceClients,
        settings: Settings,
        *,
        console: Console | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.settings = settings
        self.name = settings.trainer.model_name
        self.console = console or Console(stderr=True)
        self.sleep = sleep
        self.clock = clock

    # -- triggers ------------------------------------------------------------------------------

    def check(self) -> RetrainingRun | None:
        """Ask the trainer for a run if a trigger fires; the started run, else None.

        A drift alarm on the production version wins over new votes. A refusal (cooldown,
        budget, a run already running) is recorded by the trainer and logged here.
        """
        overview = self.clients.trainer.retraining(limit=1, name=self.name)
        if overview.running is not None:
            log.info("retraining run %s is running; no trigger checked", overview.running)
            return None
        fired = self.drift(overview.policy)
        votes = self.votes()
        if fired is None and votes is not None:
            fired = self.new_votes(overview.policy, votes, overview.votes_baseline)
        if fired is None:
            return None
        trigger, why = fired
        return self.request(trigger, why=why, votes=votes)

    def drift(self, policy: RetrainingPolicy) -> tuple[str, Detail] | None:
        """``("drift", evidence)`` when a signal the policy retrains on alarms on the
        production version; None otherwise, and when the monitor cannot be read (missing
        data is no trigger)."""
        try:
            version = self.clients.trainer.production_version(self.name)
            if version is None:
                return None
            state = self.clients.inference.monitoring(version)
        except MlcycleError as exc:
            log.warning("drift not checked: %s", exc)
            return None
        alarms = {
            signal.signal: signal.since.isoformat() if signal.since else None
            for monitored in state.versions
            if monitored.model_version == version
            for signal in monitored.signals
            if signal.alarm
        }
        wanted = policy.drift_signals
        alarming = sorted(s for s in alarms if wanted is None or s in wanted)
        if not alarming:
            return None
        since = {s: alarms[s] for s in alarming}
        return "drift", {"signals": alarming, "version": version, "since": since}

    def votes(self) -> int | None:
        """The votes stored now (the collector's count); None when it cannot be read."""
        try:
            return self.clients.collector.stats().count(VOTES)
        except MlcycleError as exc:
            log.warning("votes not counted: %s", exc)
            return None

    def new_votes(
        self, policy: RetrainingPolicy, votes: int, baseline: int | None
    ) -> tuple[str, Detail] | None:
        """``("new_votes", evidence)`` when enough votes arrived since the last run."""
        new = votes - (baseline or 0)
        if policy.new_votes is None or new < policy.new_votes:
            return None
        return "new_votes", {"votes": votes, "votes_baseline": baseline, "new_votes": new}

    def request(
        self,
        trigger: str,
        *,
        why: Mapping[str, Any] | None = None,
        votes: int | None = None,
        force: bool = False,
    ) -> RetrainingRun | None:
        """Ask the trainer for a run; None (logged) when its policy refuses."""
        try:
            run = self.clients.trainer.request_retraining(
                trigger, why=why, votes=votes, name=self.name, force=force
            )
        except RetrainingRefused as refused:
            log.info("retraining %s refused: %s", trigger, refused.run.reason)
            self.console.print(f"[yellow]retraining refused[/]: {refused.run.reason}")
            return None
        self.console.print(f"retraining run [bold]{run.id}[/] started ({trigger})")
        return run

    # -- one run -------------------------------------------------------------------------------

    def run(self, run_id: str) -> RetrainingRun:
        """Drive run ``run_id`` to its end, stage by stage; the run as it ended.

        Interrupted (Ctrl-C, or SIGTERM turned into KeyboardInterrupt), it reports the
        stage it was in failed, so the run blocks no other, and re-raises.
        """
        try:
            return self._drive(run_id)
        except KeyboardInterrupt:
            self._interrupted(run_id)
            raise

    def _interrupted(self, run_id: str) -> None:
        trainer = self.clients.trainer
        try:
            run = trainer.retraining_run(run_id)
            if not run.active:
                return
            last = run.stages[-1] if run.stages else None
            running = last is not None and last.status == "running"
            stage = last.name if last is not None and running else STAGES[len(run.stages)]
            why = "the runner was interrupted"
            if stage == "rollout" and running:
                why += f"; rollout {last.detail.get('rollout')} goes on under the trainer"
            trainer.report_stage(run_id, stage, "failed", error=why)
        except MlcycleError as exc:
            log.warning("interrupted run %s not reported: %s", run_id, exc)

    def _drive(self, run_id: str) -> RetrainingRun:
        trainer = self.clients.trainer
        run = trainer.retraining_run(run_id)
        context = Made()
        steps: list[tuple[str, Callable[[], Detail]]] = [
            ("label", lambda: self._label(context)),
            ("featurize", lambda: self._featurize(context)),
            ("train", lambda: self._train(run, context)),
            ("bless", lambda: self._bless(context)),
        ]
        for stage, step in steps:
            if run.stop_requested or not run.active:
                return self._stopped(run, stage)
            try:
                run = trainer.report_stage(run_id, stage, "running")
            except InvalidInput:  # 409: a stop came in since the last report
                run = trainer.retraining_run(run_id)
                if run.stop_requested or not run.active:
                    return self._stopped(run, stage)
                raise
            self.console.print(f"[bold]{stage}[/] ({run_id})")
            try:
                detail = step()
            except (MlcycleError, StageFailed) as exc:
                log.warning("retraining %s: %s failed: %s", run_id, stage, exc)
                return trainer.report_stage(run_id, stage, "failed", error=str(exc))
            run = trainer.report_stage(run_id, stage, "succeeded", detail=detail)
        if run.stop_requested or not run.active:
            return self._stopped(run, "rollout")
        return self._roll_out(run, context.version)

    def _stopped(self, run: RetrainingRun, stage: str) -> RetrainingRun:
        if not run.active:
            return run
        return self.clients.trainer.report_stage(run.id, stage, "stopped")

    def _label(self, context: Made) -> Detail:
        params = self.label_params()
        labeled = label_via_api(self.clients.labeler, params, console=self.console)
        context.label_run = labeled.id
        stats = labeled.stats
        return {
            "label_run": labeled.id,
            "strategy": params.strategy,
            "labeled": stats.labeled if stats else None,
        }

    def label_params(self) -> RunParams:
        """The production model's label run's parameters (its strategy, its labeling
        functions), so the new model learns from labels made the same way; the defaults of
        the task without a production model."""
        trainer, labeler = self.clients.trainer, self.clients.labeler
        version = trainer.production_version(self.name)
        if version is not None:
            label_run = trainer.model(version, name=self.name).label_run
            if label_run:
                params = labeler.run(label_run).params
                if params is not None:
                    return params
        return RunParams(task=self.settings.labeler.task)

    def _featurize(self, context: Made) -> Detail:
        done = featurize_via_api(self.clients.featurizer, context.label_run)
        manifest = done.feature_set
        return {
            "fitted": done.transform.version,  # current only if the key may make it so
            "feature_set": f"{manifest.transform}/{manifest.label_run}",
            "rows": manifest.rows,
        }

    def _train(self, run: RetrainingRun, context: Made) -> Detail:
        job = train_via_api(
            self.clients.trainer,
            context.label_run,
            run.policy.trials,
            console=self.console,
            time_budget_s=run.policy.train_time_budget_s,
            auto_promote=False,
            extra=_job_settings(run.policy),
        )
        context.job = job
        return {"job": job.id, **_model_of(job)}

    def _bless(self, context: Made) -> Detail:
        job = context.job
        if job is None:
            raise StageFailed("no training job to judge")
        model = job.result.model if job.result else None
        if model is None:
            raise StageFailed(f"training job {job.id} exported no model to bless")
        if model.state != "blessed":
            raise StageFailed(f"version {model.version} is {model.state}: {model.reason}")
        context.version = model.version
        return {"version": model.version, "reason": model.reason}

    # -- the rollout ---------------------------------------------------------------------------

    def _roll_out(self, run: RetrainingRun, version: int) -> RetrainingRun:
        """Have the trainer roll ``version`` out, follow the rollout to its end, report it."""
        trainer = self.clients.trainer
        run = trainer.report_stage(run.id, "rollout", "running", detail={"version": version})
        stage = run.stage("rollout")
        rollout_id = stage.detail.get("rollout") if stage else None
        if not run.active or not rollout_id:
            return run  # the rollout did not start: the trainer failed the stage, saying why
        self.console.print(f"[bold]rollout[/] {rollout_id} of version {version}")
        rollout, told, last_report = None, None, self.clock()
        while True:
            try:
                rollout = trainer.rollout(str(rollout_id)).rollout
            except Unavailable as exc:  # the trainer restarting: the rollout goes on there
                log.warning("rollout %s not read: %s", rollout_id, exc)
                self.sleep(self.settings.rollouts.retraining_poll_s)
                continue
            if not rollout.active:
                break
            news = (rollout.phase, rollout.canary_percent, rollout.status)
            if news != told or self.clock() - last_report >= HEARTBEAT_S:
                run = trainer.report_stage(run.id, "rollout", "running", detail=_progress(rollout))
                told, last_report = news, self.clock()
                self.console.print(f"  {rollout.phase} {rollout.canary_percent:g} %")
            self.sleep(self.settings.rollouts.retraining_poll_s)
        return self._rollout_ended(run, rollout)

    def _rollout_ended(self, run: RetrainingRun, rollout: Rollout) -> RetrainingRun:
        trainer = self.clients.trainer
        detail = _progress(rollout)
        last = rollout.decisions[-1].reason if rollout.decisions else ""
        if rollout.phase == "production":
            done = trainer.report_stage(run.id, "rollout", "succeeded", detail=detail)
            self.console.print(f"version {rollout.candidate} [green]in production[/]")
            return done
        if rollout.phase == "aborted" and trainer.retraining_run(run.id).stop_requested:
            return trainer.report_stage(run.id, "rollout", "stopped", detail=detail)
        why = f"{rollout.phase.replace('_', ' ')}: {last}"
        self.console.print(f"version {rollout.candidate} [red]{why}[/]")
        return trainer.report_stage(run.id, "rollout", "failed", detail=detail, error=why)

    # -- the loop ------------------------------------------------------------------------------

    def watch(self, every_s: float | None = None, *, rounds: int | None = None) -> None:
        """Check the triggers every ``every_s`` (the settings' by default) and drive each run
        that starts; ``rounds`` bounds the loop (None: until interrupted). A round that
        fails (a service down) is logged, and the next round tries again."""
        every = every_s or self.settings.rollouts.retraining_check_s
        done = 0
        while rounds is None or done < rounds:
            try:
                started = self.check()
                if started is not None:
                    ended = self.run(started.id)
                    log.info("retraining run %s %s: %s", ended.id, ended.status, ended.reason)
            except MlcycleError as exc:
                log.warning("retraining check failed: %s", exc)
            done += 1
            if rounds is None or done < rounds:
                self.sleep(every)


def cycle_figures(run: RetrainingRun) -> dict[str, float | None]:
    """A drift-triggered run's times: from the earliest alarm it names to its candidate's
    first canary step (``alarm_to_canary_s``), and from there to production
    (``canary_to_production_s``); None where the run did not get that far."""
    since = run.why.get("since") if run.trigger == "drift" else None
    alarms = [str(t) for t in since.values() if t] if isinstance(since, dict) else []
    rollout = run.stage("rollout")
    detail = rollout.detail if rollout is not None else {}
    canary = detail.get("first_canary_at")
    promoted = detail.get("finished_at") if detail.get("phase") == "production" else None
    done = str(promoted) if promoted else None

    def seconds(start: str | None, end: str | None) -> float | None:
        if not start or not end:
            return None
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()

    canary_at = str(canary) if canary else None
    return {
        "alarm_to_canary_s": seconds(min(alarms) if alarms else None, canary_at),
        "canary_to_production_s": seconds(canary_at, done),
    }


def _job_settings(policy: RetrainingPolicy) -> dict[str, object]:
    """What the policy sets of the training job: its first trial (production's
    hyper-parameters, by default) and its blessing margins (else the job's defaults)."""
    keys = ("first_trial", "bless_margin", "behaviour_margin")
    return {key: getattr(policy, key) for key in keys if getattr(policy, key) is not None}


def _model_of(job: TrainingJob) -> Detail:
    model = job.result.model if job.result else None
    return {"version": model.version, "state": model.state} if model else {}


def _progress(rollout: Rollout) -> Detail:
    """What a rollout stage's report says of the rollout."""
    return {
        "rollout": rollout.id,
        "phase": rollout.phase,
        "canary_percent": rollout.canary_percent,
        "first_canary_at": rollout.first_canary_at,
        "finished_at": rollout.finished_at,
        "seen_at": datetime.now(UTC).isoformat(),
    }
