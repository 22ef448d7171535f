"""Continuous training: the retraining policy and the record of each retraining run.

A retraining run takes a model from fresh labels to production with no human step::

    label run -> featurize -> train -> bless -> rollout (shadow -> canary -> production)

The trainer service owns the runs and enforces :class:`RetrainingPolicy` in one
place: what may start a run (a drift alarm, enough new votes, the schedule, a
person), the cooldown between runs and the daily budget. A tooling process (the
runner) checks the triggers, asks the trainer for a run, drives each stage through
the services' APIs and reports it. A refusal is itself recorded, as a run with
status ``skipped`` and the reason, so an operator sees why nothing happened.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from mlcycle.contracts.repository import StoredRecord
from mlcycle.contracts.rollouts import RolloutPolicy

RETRAINING_RUN_KIND = "retraining-run"
Trigger = Literal["drift", "new_votes", "schedule", "manual"]
TRIGGERS: tuple[Trigger, ...] = get_args(Trigger)
RunStatus = Literal["running", "succeeded", "failed", "stopped", "skipped"]
StageName = Literal["label", "featurize", "train", "bless", "rollout"]
# The order every run goes through its stages; none is skipped.
STAGES: tuple[StageName, ...] = get_args(StageName)
StageStatus = Literal["running", "succeeded", "failed", "stopped"]
STAGE_ENDS: tuple[StageStatus, ...] = ("succeeded", "failed", "stopped")
# Why the policy refused a run (the ``refusal`` of a skipped run).
Refusal = Literal["running", "cooldown", "budget", "no_trigger"]

DAY_S = 24 * 3600.0


class RetrainingPolicy(BaseModel):
    """When a retraining run may start, and what it may spend. Every field has a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    drift_signals: tuple[str, ...] | None = Field(
        None,
        description="monitor signals whose alarm on the production version starts a run "
        "(e.g. score, positive_rate, metadata:year); null: any signal",
    )
    new_votes: int | None = Field(
        1000,
        ge=1,
        description="votes stored since the last run started (moderators' decisions reach "
        "the labeler as trusted votes) that start a run; null: never on votes",
    )
    cooldown_s: float = Field(
        6 * 3600.0, ge=0.0, description="seconds from a run's start before the next may start"
    )
    max_runs_per_day: int = Field(2, ge=1, description="runs started in any 24 hours")
    trials: int = Field(8, ge=1, le=1000, description="hyper-parameter trials of the training")
    first_trial: Literal["production"] | None = Field(
        "production",
        description="the training job's first_trial: by default the search first retrains "
        "with the production model's hyper-parameters (a retrain reproduces the recipe it "
        "replaces before it explores); null: a plain search",
    )
    train_time_budget_s: float = Field(
        3600.0, gt=0.0, le=7 * 24 * 3600.0, description="no trial starts after this"
    )
    abandon_after_s: float = Field(
        12 * 3600.0,
        gt=0.0,
        description="a running run not heard of for this long is failed as abandoned "
        "(its runner died), so it blocks no other",
    )
    bless_margin: float | None = Field(
        None,
        ge=-0.1,
        le=1.0,
        description="the training job's blessing margin (null: the trainer's); negative lets "
        "a candidate within that much of production go on to its rollout, the live judge",
    )
    behaviour_margin: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="the training job's behaviour_margin (null: the job's, 0.05): the most "
        "pass rate the candidate may lose against production on any capability of the "
        "behavioural suite; like a negative bless_margin, a tolerance for a retrained "
        "candidate whose rollout will judge it on live traffic",
    )
    rollout: RolloutPolicy | None = Field(
        None, description="the candidate's rollout policy; null: the trainer's default"
    )

    @model_validator(mode="after")
    def _abandon_after_training(self) -> RetrainingPolicy:
        if self.abandon_after_s <= self.train_time_budget_s:
            raise ValueError(
                "abandon_after_s must exceed train_time_budget_s: a run is quiet while it trains"
            )
        return self


class RetrainingStage(BaseModel):
    """One stage of a run as the runner reported it."""

    model_config = ConfigDict(validate_assignment=True)

    name: StageName
    status: StageStatus
    started_at: str
    finished_at: str | None = None
    detail: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="what it made: label run id, feature set, job id, version, rollout id",
    )
    error: str | None = None


class RetrainingRun(StoredRecord):
    """One retraining run, or one the policy refused (``skipped``)."""

    model_config = ConfigDict(validate_assignment=True)

    kind: Literal["retraining-run"] = RETRAINING_RUN_KIND
    name: str = Field(description="the model name it retrains")
    trigger: Trigger
    why: dict[str, JsonValue] = Field(
        default_factory=dict, description="the evidence: alarming signals, vote counts"
    )
    status: RunStatus
    reason: str | None = Field(None, description="why it was skipped, failed or stopped")
    refusal: Refusal | None = Field(None, description="the policy's rule that skipped it")
    next_allowed_at: str | None = Field(None, description="skipped: when a run may start")
    after_run: str | None = Field(None, description="skipped: the last run started before it")
    repeats: int = Field(
        0, ge=0, description="skipped: further refusals of the same trigger for the same rule"
    )
    policy: RetrainingPolicy
    stages: list[RetrainingStage] = Field(default_factory=list)
    votes_at_start: int | None = None
    started_at: str
    updated_at: str
    finished_at: str | None = None
    stop_requested: bool = False
    stop_reason: str | None = None
    actor: str = Field(description="the key's name that asked for it")

    @property
    def active(self) -> bool:
        """Still running."""
        return self.status == "running"

    @property
    def started(self) -> bool:
        """A run that was let start (not one the policy skipped): it counts for the policy."""
        return self.status != "skipped"

    def stage(self, name: StageName) -> RetrainingStage | None:
        """The stage ``name`` if it was reported."""
        return next((s for s in self.stages if s.name == name), None)


class RetrainingOverview(BaseModel):
    """``GET /v1/retraining-runs``: the policy in force, what it allows now, and the runs."""

    policy: RetrainingPolicy
    running: str | None = Field(None, description="the running run's id")
    next_allowed_at: str | None = Field(
        None, description="when cooldown and budget next allow a run; null: now"
    )
    runs_last_day: int = Field(description="runs started in the last 24 hours")
    votes_baseline: int | None = Field(
        None, description="the vote count new votes are counted from (the last run's start)"
    )
    runs: list[RetrainingRun]
