"""Training: what a job is asked to do, the job record, and one record per search trial.

``POST /v1/jobs`` takes a :class:`JobConfig`. The trainer records the job as a
:class:`TrainingJob` (collection ``runs``, kind ``train-job``) and each finished
trial of its hyper-parameter search as a :class:`Trial` (kind ``trial``). Both
are read back by the trainer's API, by ``mlcycle train`` and by a resumed job.

Every field of a config is checked before a job starts, so a bad config is a
4xx that names the field, never a failed job an hour later.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from mlcycle.contracts.behaviour import BehaviourSummary
from mlcycle.contracts.encoder import EncoderOptions, EncoderSummary
from mlcycle.contracts.repository import StoredRecord
from mlcycle.contracts.thresholds import ThresholdPolicy

TRAIN_JOB_KIND = "train-job"
TRIAL_KIND = "trial"

_STRICT = ConfigDict(extra="forbid", frozen=True)

# What a search chooses between, each a featurizer config ("current": the served one, as is).
FeatureVariant = Literal[
    "current",
    "talk",
    "words",
    "words+chars",
    "bigrams+chars",
    "words+chars+embeddings",
    "embeddings",
]
Metric = Literal["roc_auc", "pr_auc", "weighted_f1", "macro_f1", "accuracy"]
# "interrupted": stopped at a checkpoint by a shutdown; the next trainer process resumes it.
JobStatus = Literal["queued", "running", "interrupted", "succeeded", "failed"]
# A hyper-parameter's value as Optuna records it.
ParamValue = str | int | float | bool | None


def new_job_id(now: datetime | None = None) -> str:
    """Sortable by creation time to the second: ``tj-20261124T181500-1a2b3c``."""
    return f"tj-{(now or datetime.now(UTC)):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def trial_id(job_id: str, number: int) -> str:
    """The record id of trial ``number`` of ``job_id``: ``<job>:trial-0003``."""
    return f"{job_id}:trial-{number:04d}"


# -- the job's config ---------------------------------------------------------------------------


class IntRange(BaseModel):
    """An integer drawn from ``low..high`` (log-uniform when ``log``)."""

    model_config = _STRICT

    low: int = Field(ge=1)
    high: int = Field(ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class FloatRange(BaseModel):
    """A float drawn from ``low..high`` (log-uniform when ``log``)."""

    model_config = _STRICT

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


# A comment source as a job names it, and its training weight (finite; 0 leaves it out).
SourceName = Annotated[str, Field(min_length=1, max_length=128)]
SourceWeight = Annotated[float, Field(ge=0.0, le=1000.0, allow_inf_nan=False)]

# Each searched parameter is a fixed value, a list of choices, or a range.
IntParam = Annotated[int, Field(ge=1)] | list[Annotated[int, Field(ge=1)]] | IntRange
RateParam = Annotated[float, Field(gt=0, le=1)] | list[Annotated[float, Field(gt=0, le=1)]]
DropoutParam = Annotated[float, Field(ge=0, lt=1)] | list[Annotated[float, Field(ge=0, lt=1)]]


class SearchSpace(BaseModel):
    """The hyper-parameters a search explores; the defaults are a space that fits in minutes."""

    model_config = _STRICT

    features: list[FeatureVariant] = Field(
        default_factory=lambda: ["words+chars", "bigrams+chars", "words+chars+embeddings"],
        min_length=1,
    )
    # Centred where Davidson's dev ROC-AUC peaked (benchmarks/quality.py): wide
    # embeddings learn best slowly, with strong dropout, over several epochs.
    hidden_units: IntParam = IntRange(low=32, high=192, log=True)
    hidden_layers: IntParam = IntRange(low=1, high=2)
    dropout: DropoutParam | FloatRange = FloatRange(low=0.2, high=0.6)
    learning_rate: RateParam | FloatRange = FloatRange(low=2e-4, high=3e-3, log=True)
    batch_size: IntParam = Field(default_factory=lambda: [64, 128])
    epochs: IntParam = IntRange(low=3, high=10)
    wide: bool | list[bool] = False

    @model_validator(mode="after")
    def _sane(self) -> SearchSpace:
        for name in ("hidden_units", "hidden_layers", "batch_size", "epochs", "features", "wide"):
            value = getattr(self, name)
            if isinstance(value, list) and not value:
                raise ValueError(f"{name}: an empty list of choices")
        if isinstance(self.hidden_layers, IntRange) and self.hidden_layers.high > 4:
            raise ValueError("hidden_layers: at most 4")
        return self


class TrialParams(BaseModel):
    """One point of the search space: everything one training run needs."""

    model_config = _STRICT

    preset: Literal["default", "seed", "encoder"] = "default"
    features: FeatureVariant = "words+chars"
    hidden_units: int = Field(128, ge=1, le=4096)
    hidden_layers: int = Field(1, ge=1, le=4)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    learning_rate: float = Field(2e-3, gt=0.0, le=10.0)
    batch_size: int = Field(128, ge=1, le=8192)
    epochs: int = Field(6, ge=1, le=200)
    wide: bool = Field(False, description="add a linear (wide) part to the MLP's logits")

    def layer_sizes(self) -> tuple[int, ...]:
        """Hidden layer widths: the seed's fixed 1000 and 900, else halving from hidden_units."""
        if self.preset == "seed":
            return (1000, 900)
        return tuple(max(8, self.hidden_units // 2**i) for i in range(self.hidden_layers))


class JobConfig(BaseModel):
    """A training job: which data, which search, how the winner is chosen and judged."""

    model_config = _STRICT

    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="model name (default: settings.trainer.model_name)",
    )
    task: str | None = Field(None, max_length=128, description="label task (default: settings)")
    label_run: str | None = Field(None, max_length=128, description="default: the latest run")
    preset: Literal["search", "seed", "encoder"] = Field(
        "search",
        description="search the space, train the original talk's network once, or train the "
        "MiniLM encoder with a head (see encoder)",
    )
    trials: int = Field(8, ge=1, le=1000)
    time_budget_s: float = Field(1800.0, gt=0, le=7 * 24 * 3600)
    search: SearchSpace = Field(default_factory=SearchSpace)
    metric: Metric | None = Field(
        None,
        description="dev metric that selects and blesses (default: settings.trainer.bless_metric)",
    )
    soft_labels: bool = Field(True, description="train on the labeler's class probabilities")
    class_weight: Literal["balanced", "none"] = "balanced"
    blend_linear: bool = Field(
        True,
        description="blend the selected network with a logistic regression on the same "
        "features when the blend is better on dev (search only; the seed runs alone)",
    )
    first_trial: Literal["production"] | None = Field(
        None,
        description="search: 'production' runs the production model's hyper-parameters as "
        "the first trial, so a retrain on refreshed data starts from the recipe it would "
        "replace; with no production model, or one whose parameters lie outside the search "
        "space, the search starts as usual (logged). The seed and encoder presets ignore it",
    )
    patience: int = Field(2, ge=1, le=50, description="epochs without dev improvement")
    seed: int = Field(0, ge=0)
    slice_fields: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=20, description="metadata fields for per-slice metrics"
    )
    # -- a mix of corpora: how much each comment source weighs in training --
    source_weights: dict[SourceName, SourceWeight] = Field(
        default_factory=dict,
        max_length=100,
        description="training weight per comment source (corpus, e.g. davidson, hatexplain), "
        "times the class weight; a source not named weighs 1, and 0 leaves it out of training "
        "(dev and test still score it, per source)",
    )
    shuffle_train_labels: bool = Field(
        False,
        description="a drill for the rollout guard: train on the train split's labels "
        "shuffled (dev and test keep theirs, so the figures stay honest); the winner is "
        "worthless, is not blessed, and a rollout forced with it must be rolled back",
    )
    bless: bool = Field(True, description="judge the winner and export it for serving")
    bless_margin: float | None = Field(
        None,
        ge=-0.1,
        le=1.0,
        description="by how much the winner's dev metric must beat production's (default: "
        "the trainer's MLCYCLE_BLESS_MARGIN); negative, how far below it may be: a tolerance "
        "for a retrained candidate whose rollout will judge it on live traffic",
    )
    auto_promote: bool = Field(
        True,
        description="false keeps a blessed winner for a person to promote, whatever the "
        "trainer's MLCYCLE_AUTO_PROMOTE; true leaves it to that setting",
    )
    threshold_policy: ThresholdPolicy = Field(
        default_factory=ThresholdPolicy,
        description="the traffic the served threshold is chosen for (binary tasks)",
    )
    # -- the behavioural suite (tests/behaviour): scored for the report and the blessing gate
    behaviour_margin: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="the most pass rate the winner may lose against production on any "
        "capability of the behavioural suite and still be blessed",
    )
    # -- the encoder variant (mlcycle.trainer.encoder) --
    encoder: EncoderOptions = Field(default_factory=EncoderOptions)
    consider_encoder: bool = Field(
        False,
        description="search: also train the encoder, and pick it when it wins on dev and its "
        "single-comment predict latency is within latency_budget_ms",
    )
    latency_budget_ms: float = Field(
        5.0, gt=0, le=60_000, description="the most a single-comment predict may take (p50)"
    )


# -- the job record -----------------------------------------------------------------------------


class TrialOutcome(BaseModel):
    """The last finished trial, as a job's progress shows it."""

    number: int
    state: str
    value: float | None = None
    error: str | None = None


class JobProgress(BaseModel):
    """Where a job is: its stage, what the stage is doing, and the search's figures so far."""

    stage: str
    trials_done: int = 0
    trials_total: int | None = None
    best_value: float | None = None
    last_trial: TrialOutcome | None = None
    # What a long step inside the stage is doing now ("fitting the 'talk' transform").
    detail: str | None = None


class ModelSummary(BaseModel):
    """The model version a job exported, and the registry's verdict on it."""

    name: str
    version: int
    state: str
    reason: str | None = None
    path: str | None = None


class BlendDevFigures(TypedDict):
    """The dev metric of the network alone, the logistic regression alone, and the blend."""

    network: float
    linear: float
    blend: float


class BlendSummary(TypedDict, total=False):
    """What blending the network with its linear companion decided, and the dev figures why.

    ``used`` and ``reason`` are always there; the figures only once the blend was tried.
    """

    used: bool
    reason: str
    network_weight: float
    linear_c: float
    metric: str
    dev: BlendDevFigures
    dev_by_weight: dict[str, float]
    dev_linear_by_c: dict[str, float]
    seconds: float


class JobResult(BaseModel):
    """What a finished job found: the selected trial, its dev and test figures, its model.

    ``dev`` and ``test`` are the evaluations' JSON (every metric, per class and
    per slice); ``blend`` says whether the linear companion was blended in.
    """

    metric: str
    best_trial: int
    params: TrialParams
    blend: BlendSummary | None = None
    encoder: EncoderSummary | None = None
    transform: str
    dev: dict[str, Any]
    test: dict[str, Any] | None = None
    model: ModelSummary | None = None
    report: str
    search_seconds: float
    behaviour: BehaviourSummary | None = Field(
        None, description="the behavioural suite's pass rates, overall and per capability"
    )


class TrainingJob(StoredRecord):
    """One training job: its config, stage, progress and, when done, its result or error.

    Timestamps are ISO 8601 in UTC. ``transforms`` maps each feature variant the
    job fitted to its transform version, and ``version`` is the model version the
    export claimed, so that a resumed job reuses both.
    """

    kind: Literal["train-job"] = TRAIN_JOB_KIND
    status: JobStatus = "queued"
    name: str
    task: str
    label_run: str
    config: JobConfig
    created_at: str
    updated_at: str
    started_at: str | None = None
    finished_at: str | None = None
    progress: JobProgress
    spent_s: float = 0.0
    transforms: dict[str, str] = Field(default_factory=dict)
    version: int | None = None
    result: JobResult | None = None
    error: str | None = None
    submitted_by: str | None = Field(
        None,
        description="the name of the API key that submitted it (anonymous: no keys; "
        "system:<what> for a job the trainer started itself)",
    )

    @property
    def finished(self) -> bool:
        """True once the job succeeded or failed: executing it again changes nothing."""
        return self.status in ("succeeded", "failed")


class Trial(StoredRecord):
    """One trial of a job's search: its parameters, dev figures, state, time and error."""

    kind: Literal["trial"] = TRIAL_KIND
    job: str
    number: int
    state: str
    params: dict[str, ParamValue] = Field(default_factory=dict)
    dev: dict[str, float] | None = None
    metric: str
    value: float | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    # Per-epoch curves ("loss", "dev_loss", "dev_<metric>").
    history: dict[str, list[float | None]] | None = None
    seconds: float | None = None
    error: str | None = None
