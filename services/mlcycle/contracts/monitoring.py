"""The production loop's records: a model version's reference profile, what the monitor says
of each signal, the events it publishes, and moderators' decisions.

- :class:`ReferenceProfile` is written by the trainer beside each SavedModel
  (``profile.json``) from the model's dev split as the model saw it. It is
  small (kilobytes) and plain JSON: the monitor reads it without TensorFlow.
- :class:`SignalState` is the monitor's current word on one signal of one
  model version (``GET /v1/monitoring``); :class:`WindowResult` one evaluated
  window of it (``GET /v1/monitoring/history``).
- :class:`MonitoringEvent` goes on the ``monitoring`` topic when a signal
  enters or leaves alarm.
- :class:`Decision` is a moderator's decision on a scored comment
  (``POST /v1/feedback`` and the ``feedback`` topic).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from mlcycle.contracts.comments import RecordId, ReviewerName

_STRICT = ConfigDict(extra="forbid", frozen=True)

PROFILE_FILE = "profile.json"
PROFILE_SCHEMA = 1

# The signals every profile can carry; a metadata field's signal is "metadata:<field>".
SCORE = "score"
POSITIVE_RATE = "positive_rate"
LENGTH = "length"
OOV_SHARE = "oov_share"
NGRAMS = "ngrams"
METADATA_PREFIX = "metadata:"

SignalStatus = Literal["ok", "alarm", "insufficient", "unavailable"]


# -- the reference profile --------------------------------------------------------------------


class Histogram(BaseModel):
    """Counts of a numeric quantity over fixed bins: ``edges`` has one more entry than
    ``counts``; values below the first edge count in the first bin, above the last in the last."""

    model_config = _STRICT

    edges: list[float] = Field(min_length=2)
    counts: list[float]


class Categories(BaseModel):
    """Counts of a categorical quantity: one per reference category, then one for any other
    value (or none)."""

    model_config = _STRICT

    categories: list[str]
    counts: list[float] = Field(description="len(categories) + 1: the last is 'other or missing'")


class RatioMoments(BaseModel):
    """Per-record sums behind a ratio of totals and its variance: for records i with
    numerator x_i and denominator y_i, ``n``, Σx, Σy, Σx², Σy², Σxy. Additive over records,
    so processes can add theirs; a proportion is the case y_i = 1."""

    model_config = _STRICT

    n: int = 0
    x: float = 0.0
    y: float = 0.0
    xx: float = 0.0
    yy: float = 0.0
    xy: float = 0.0


class NgramBuckets(BaseModel):
    """Frequencies of the word uni- and bigrams hashed into a fixed, small number of buckets
    (texts with an n-gram in the bucket), with a few of the n-grams that fell in each (what a
    moved bucket is made of)."""

    model_config = _STRICT

    buckets: int = Field(ge=2)
    counts: list[float]
    examples: list[list[str]] = Field(description="per bucket, up to a few n-grams seen in it")
    dispersion: float = Field(
        1.0,
        gt=0.0,
        description="how many times more the bucket shares vary between samples of texts "
        "than between samples of independent n-grams, measured on dev (a topic clusters its "
        "n-grams in texts; a bucket counts at most once per text, which can make it less)",
    )


class CalibrationBins(BaseModel):
    """The served score's reliability on dev, at the deployment prior: per score bin, how many
    dev rows fell in it and what share of them were positive once dev's class prior is moved
    to the one the scores are calibrated to. Estimating quality before labels (CBPE) reads
    a served score's probability of being right from it."""

    model_config = _STRICT

    edges: list[float] = Field(min_length=2)
    counts: list[int]
    positive_rate: list[float | None] = Field(
        description="per bin, the positive share at the deployment prior; null for an empty bin"
    )


class ReferenceProfile(BaseModel):
    """What a model version's inputs and scores looked like on its dev split."""

    model_config = _STRICT

    schema_version: int = PROFILE_SCHEMA
    model: str
    model_version: int
    transform: str | None
    created_at: datetime
    rows: int = Field(ge=0, description="dev rows profiled")
    threshold: float | None = Field(description="the served threshold (binary models)")
    score_prior: float | None = Field(description="the prior the served scores are under")
    score: Histogram | None = Field(description="served positive-class scores (binary)")
    positive: RatioMoments | None = Field(description="served labels: x = flagged, y = 1")
    length: Histogram = Field(description="characters per text, over the dev quantiles")
    oov: RatioMoments | None = Field(
        description="x = words outside the transform's vocabulary, y = words; null when the "
        "transform has no vocabulary (hashed words, an encoder)"
    )
    ngrams: NgramBuckets
    metadata: dict[str, Histogram | Categories] = Field(default_factory=dict)
    calibration: CalibrationBins | None = None


class ProfileReference(BaseModel):
    """Where a model version's reference profile is and what it holds: in its
    ``metadata.json`` (``profile``) and its registry record."""

    model_config = _STRICT

    file: str = PROFILE_FILE
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: int = Field(ge=0)
    signals: list[str]


# -- what the monitor says ----------------------------------------------------------------------


class Mover(BaseModel):
    """A bin, bucket or category whose share moved most between reference and window."""

    model_config = _STRICT

    key: str
    reference: float = Field(description="share in the reference profile")
    live: float = Field(description="share in the window")
    examples: list[str] = Field(default_factory=list, description="n-grams or values in it")
    ids: list[str] = Field(default_factory=list, description="ids of texts of the window in it")


class WindowResult(BaseModel):
    """One evaluated window of one signal: its statistic against the alarm threshold."""

    model_config = _STRICT

    model: str
    model_version: int
    signal: str
    window: int = Field(description="records in the window")
    statistic: float | None = Field(description="the effect size (see `test`)")
    threshold: float | None = Field(description="enter alarm above this")
    exit_threshold: float | None = Field(description="leave alarm at or below this")
    test: str = Field(description="what the statistic is, e.g. 'Jensen-Shannon divergence'")
    alarm: bool
    status: SignalStatus
    started_at: datetime
    closed_at: datetime
    movers: list[Mover] = Field(default_factory=list)
    # What a reference-vs-live plot draws: the bins (or buckets, categories) and each side's
    # share of them. Empty for the proportion signals, whose statistic says it all.
    bins: list[str] = Field(default_factory=list)
    reference_shares: list[float] = Field(default_factory=list)
    live_shares: list[float] = Field(default_factory=list)


class SignalState(BaseModel):
    """The monitor's current word on one signal of one model version, across all replicas."""

    model_config = _STRICT

    model: str
    model_version: int
    signal: str
    status: SignalStatus
    alarm: bool
    since: datetime | None = Field(description="when the alarm state last changed")
    windows: int = Field(description="windows evaluated so far")
    last: WindowResult | None
    reason: str | None = Field(None, description="why the signal is unavailable")


class MonitoringEvent(BaseModel):
    """On the ``monitoring`` topic, keyed by ``id``, when a signal enters or leaves alarm."""

    model_config = _STRICT

    id: str = Field(description="<model>:<version>:<signal>:<window number>")
    kind: Literal["alarm_raised", "alarm_cleared"]
    at: datetime
    result: WindowResult


# -- quality from moderators' decisions ------------------------------------------------------


class QualityFigures(BaseModel):
    """Quality at the served threshold over some scored comments (realized or estimated)."""

    model_config = _STRICT

    comments: int = Field(description="scored comments the figures are over")
    precision: float | None
    recall: float | None
    f1: float | None
    roc_auc: float | None
    accuracy: float | None = Field(
        None, description="share of decisions the served label got right (realized only)"
    )
    calibration_error: float | None = Field(
        None, description="expected calibration error (realized only)"
    )


class QualityWindow(BaseModel):
    """One window of a model version's scored comments: what quality was estimated from the
    scores alone, what the moderators' decisions realized, and the estimate's error."""

    model_config = _STRICT

    model: str
    model_version: int
    started_at: datetime
    closed_at: datetime | None = Field(description="null for the window still filling")
    estimated: QualityFigures | None
    realized: QualityFigures | None = Field(description="null until decisions are joined")
    estimate_error: dict[str, float] = Field(
        default_factory=dict, description="|estimated - realized| per figure both have"
    )
    label_lag_s: dict[str, float] = Field(
        default_factory=dict, description="decision time minus score time: p50, p90, max"
    )
    decisions: int = Field(0, description="decisions joined to this window's scores")
    pending: int = Field(0, description="decisions still waiting for their comment's score")


# -- moderators' decisions --------------------------------------------------------------------


class Decision(BaseModel):
    """A moderator's decision on a comment mlcycle scored (``POST /v1/feedback``).

    ``label`` is the class index (0/1 for toxicity). ``decided_at`` defaults to
    when it was received. On the ``feedback`` topic a record must name its
    ``reviewer``; through the REST API the caller's key does.
    """

    model_config = _STRICT

    comment_id: RecordId
    label: StrictInt = Field(ge=0)
    decided_at: datetime | None = None
    reviewer: ReviewerName | None = None
    task: StrictStr = Field("toxicity", min_length=1, max_length=128)


# -- the routes' answers ------------------------------------------------------------------------


class VersionMonitoring(BaseModel):
    """What the monitor says of one model version: each signal's state and the quality
    windows (estimated beside realized)."""

    model_version: int
    signals: list[SignalState]
    quality: list[QualityWindow] = Field(default_factory=list)


class MonitoringState(BaseModel):
    """``GET /v1/monitoring``: the served model's monitored versions, across all replicas."""

    model: str
    versions: list[VersionMonitoring]


class MonitoringHistory(BaseModel):
    """``GET /v1/monitoring/history``: evaluated windows, oldest first."""

    items: list[WindowResult]
