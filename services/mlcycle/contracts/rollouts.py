"""Rollouts: a candidate version tried on live traffic (shadow, then canary steps) before it serves.

The registry keeps one :class:`Rollout` per attempt in the ``models`` collection
(kind ``rollout``) and takes every decision on it; the inference replicas only
route by the :class:`RoutingState` the registry publishes, and pool what they
saw (the evidence) in one shared place, so that every replica routes the same
comment the same way and no replica decides anything on its own.

A rollout's phases::

    shadow (candidate scores a share of traffic off the answer's path)
      -> canary (candidate answers canary_steps[i] % of traffic, sticky per comment)
      -> production (candidate promoted) | rolled_back | aborted

:class:`RolloutPolicy` holds the thresholds the decisions are taken on;
:class:`Comparison` is what one decision looked at (and what ``GET /v1/rollouts``
shows).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlcycle.contracts.repository import StoredRecord

ROLLOUT_KIND = "rollout"
RolloutPhase = Literal["shadow", "canary", "production", "rolled_back", "aborted"]
ROLLOUT_PHASES: tuple[RolloutPhase, ...] = get_args(RolloutPhase)
RolloutStatus = Literal["running", "paused", "finished"]
# What a decision did. ``advance``: next canary step (or shadow -> first step); ``hold``:
# not enough (or no fresh) evidence yet; ``settle``: the previous step's evidence has all
# arrived, so this step counts its pairs from here; the admin's actions are
# pause/resume/force/abort.
DecisionAction = Literal[
    "start",
    "advance",
    "settle",
    "promote",
    "hold",
    "rollback",
    "pause",
    "resume",
    "force",
    "abort",
]
# Why a ``hold`` held: the rollout is not running; data is missing (no evidence, stale
# evidence, the model server down); data is back after missing data and the step counts
# afresh; too few samples in the step; waiting for realized quality before promoting.
HoldKind = Literal["not_running", "missing_data", "recovering", "samples", "quality"]
HOLD_KINDS: tuple[HoldKind, ...] = get_args(HoldKind)
# Holds recorded before they had a kind: the words their reasons began with (or held).
_LEGACY_HOLDS: tuple[tuple[str, HoldKind], ...] = (
    ("not running", "not_running"),
    ("missing data", "missing_data"),
    ("recovering", "recovering"),
    ("collecting", "samples"),
    ("waiting for realized quality", "quality"),
)
# The two versions a comparison is between, and which of them answered.
Role = Literal["production", "candidate"]
ROLES: tuple[Role, ...] = get_args(Role)
Verdict = Literal["not_worse", "worse", "undecided"]
# The default least logit correlation of a candidate's scores with production's, measured
# (decision 0017, benchmarks/rollout_guard.py): retrains correlate 0.84 and 0.99 with
# production on real held-out comments (0.63 to 1.00 on the demo's generated ones), models
# trained on shuffled labels 0.06 and 0.10 (-0.16 to 0.22), while the shuffled-label drill
# labels 97 % to 100 % of those comments as production does.
MIN_SCORE_CORRELATION = 0.5


class RolloutPolicy(BaseModel):
    """When a rollout moves on, holds or rolls back. Every field has a working default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shadow_share: float = Field(
        1.0, ge=0.0, le=1.0, description="share of traffic the shadow also scores"
    )
    skip_shadow: bool = Field(False, description="go straight to the first canary step")
    canary_steps: tuple[float, ...] = Field(
        (5.0, 25.0, 50.0, 100.0), min_length=1, description="percent of traffic per canary step"
    )
    min_samples: int = Field(
        300, ge=1, description="paired comparisons a phase or step needs before it moves on"
    )
    max_error_rate: float = Field(0.01, ge=0.0, le=1.0, description="of the candidate's calls")
    p99_latency_ms: float = Field(250.0, gt=0.0, description="bound on the candidate's p99")
    min_agreement: float = Field(
        0.9, ge=0.0, le=1.0, description="share of pairs labelled alike at the served thresholds"
    )
    min_score_correlation: float = Field(
        MIN_SCORE_CORRELATION,
        ge=-1.0,
        le=1.0,
        description="least correlation of the candidate's logits with production's on the "
        "same comments, judged on min_samples pairs (-1: never rolls back)",
    )
    quality_margin: float = Field(
        0.02, ge=0.0, le=1.0, description="how much worse than production's realized accuracy"
    )
    alpha: float = Field(
        0.05, gt=0.0, lt=0.5, description="error rate of the sequential quality test"
    )
    require_quality: bool = Field(
        False, description="promote only once feedback shows the candidate is not worse"
    )
    evidence_max_age_s: float = Field(
        60.0, gt=0.0, description="older evidence is missing data: the rollout holds"
    )

    @model_validator(mode="after")
    def _steps_rise_to_100(self) -> RolloutPolicy:
        steps = self.canary_steps
        if any(not 0.0 < s <= 100.0 for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError("canary_steps must rise strictly, each in (0, 100]")
        if steps[-1] != 100.0:
            raise ValueError("the last canary step must be 100 (the candidate answers everything)")
        return self


class RoutingState(BaseModel):
    """How the inference replicas route one model name; the registry publishes it.

    Routing is a deterministic function of a comment's key (its id, or the hash of
    its text) and this state, so every replica routes a comment alike.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    stable: int | None = Field(None, description="the production version")
    rollout: str | None = Field(None, description="the running rollout, if any")
    canary: int | None = None
    canary_share: float = Field(0.0, ge=0.0, le=1.0)
    shadow: int | None = None
    shadow_share: float = Field(0.0, ge=0.0, le=1.0)
    revision: int = Field(0, description="grows with every change")
    updated_at: str | None = None


class RoutingTable(BaseModel):
    """Every name's routing state, as one file the replicas read."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    models: dict[str, RoutingState] = Field(default_factory=dict)


class Latency(BaseModel):
    """Quantiles of call latency, in milliseconds (None without calls)."""

    model_config = ConfigDict(frozen=True)

    p50_ms: float | None = None
    p99_ms: float | None = None
    buckets: dict[int, int] = Field(
        default_factory=dict,
        description="calls per latency bucket (only the non-empty ones), so that the "
        "quantiles of one step's calls alone can be read off two of these",
    )


class VersionFigures(BaseModel):
    """What one side of a comparison did while the rollout ran."""

    model_config = ConfigDict(frozen=True)

    version: int
    requests: int = Field(0, description="instances it scored (answered, or in shadow)")
    errors: int = Field(0, description="instances it failed to score")
    error_rate: float | None = None
    latency: Latency = Field(default_factory=Latency)
    drift_alarms: list[str] = Field(
        default_factory=list, description="monitor signals alarming on its traffic"
    )
    decisions: int = Field(0, description="moderators' decisions joined with its scores")
    accuracy: float | None = Field(None, description="realized: share of decisions it got right")


class ScoreDeltas(BaseModel):
    """Candidate score minus production score over the paired comments."""

    model_config = ConfigDict(frozen=True)

    mean: float | None = None
    p05: float | None = None
    p50: float | None = None
    p95: float | None = None
    mean_abs: float | None = None


class QualityTest(BaseModel):
    """The sequential test of realized quality: candidate accuracy minus production's.

    An always-valid confidence sequence on the difference, so reading it at every
    tick (peeking) keeps the error rate at ``alpha``.
    """

    model_config = ConfigDict(frozen=True)

    difference: float | None = None
    lower: float | None = None
    upper: float | None = None
    margin: float
    alpha: float
    verdict: Verdict = "undecided"


class Comparison(BaseModel):
    """Production against the candidate over one rollout, as the decision saw it."""

    model_config = ConfigDict(frozen=True)

    pair: Literal["production-shadow", "production-canary"]
    production: VersionFigures
    candidate: VersionFigures
    pairs: int = Field(0, description="comments scored by both versions")
    agreement: float | None = Field(None, description="share of pairs labelled alike")
    score_correlation: float | None = Field(
        None,
        description="Pearson's correlation of the two versions' scores on the paired "
        "comments, on the logit scale (scores clipped to [1e-6, 1 - 1e-6]): whether the "
        "candidate's scores follow production's even where both labels agree; None before "
        "2 pairs, or while production's scores do not vary",
    )
    correlated_pairs: int = Field(
        0,
        description="pairs the score correlation is over (evidence pooled before it was "
        "measured has pairs without it)",
    )
    score_delta: ScoreDeltas = Field(default_factory=ScoreDeltas)
    quality: QualityTest
    evidence_age_s: float | None = Field(
        None, description="seconds since a replica last reported; None: none ever did"
    )
    model_server_up: bool = True


class RolloutDecision(BaseModel):
    """One decision on a rollout: what it did, from where to where, why, on what evidence."""

    model_config = ConfigDict(frozen=True)

    time: str
    action: DecisionAction
    phase: RolloutPhase
    canary_percent: float = Field(0.0, description="the canary's share after the decision")
    reason: str
    actor: str = Field(description="rollout:<id> for its own decisions, else the key's name")
    evidence: Comparison | None = None
    hold: HoldKind | None = Field(None, description="with action hold: the kind of reason")

    @model_validator(mode="before")
    @classmethod
    def _legacy_hold(cls, data: object) -> object:
        """A hold stored before holds had a kind gets the one its reason names."""
        if not isinstance(data, dict) or data.get("action") != "hold" or data.get("hold"):
            return data
        reason = str(data.get("reason", ""))
        kind = next((kind for words, kind in _LEGACY_HOLDS if words in reason), None)
        return {**data, "hold": kind}


class Rollout(StoredRecord):
    """One attempt to put ``candidate`` in production in place of ``baseline``."""

    kind: Literal["rollout"] = ROLLOUT_KIND
    name: str
    candidate: int
    baseline: int | None = Field(description="production when the rollout started")
    policy: RolloutPolicy
    phase: RolloutPhase
    step: int = Field(-1, description="index in canary_steps; -1 in shadow")
    status: RolloutStatus = "running"
    trigger: str = Field("manual", description="manual, or retraining:<id>")
    started_at: str
    updated_at: str
    finished_at: str | None = None
    first_canary_at: str | None = Field(None, description="when the canary first answered")
    decisions: list[RolloutDecision] = Field(default_factory=list)

    @property
    def canary_percent(self) -> float:
        """The share of traffic the candidate answers now, in percent."""
        if self.phase != "canary" or self.step < 0:
            return 100.0 if self.phase == "production" else 0.0
        return self.policy.canary_steps[self.step]

    @property
    def active(self) -> bool:
        """Still running or paused (not promoted, rolled back or aborted)."""
        return self.status != "finished"


class RolloutView(BaseModel):
    """A rollout and, while it runs, the comparison its next decision would see."""

    rollout: Rollout
    comparison: Comparison | None = None


class RolloutList(BaseModel):
    """Rollouts, newest first (``GET /v1/rollouts``)."""

    rollouts: list[RolloutView]
