"""The served threshold: what a job says of the traffic, and how the threshold was chosen.

A :class:`ThresholdPolicy` is part of a job's config; a :class:`ThresholdSummary`
is what the trainer decided from it, kept in ``metadata.json``'s
``threshold_policy`` and in the job's report.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

_STRICT = ConfigDict(extra="forbid", frozen=True)

# The share of toxic comments in the traffic a model serves, when a job does not say.
# A general comment stream is mostly benign: about 8% of Civil Comments (news-site
# comments, toxicity >= 0.5) and about 10% of the Wikipedia talk-page comments of
# Jigsaw's toxic-comment challenge are toxic. Training corpora are often sampled to
# be rich in abuse (83% of Davidson's lexicon-sampled tweets are offensive), and a
# threshold tuned on them flags most of a real stream; one in ten is the deployment
# prior to assume instead.
DEFAULT_POSITIVE_RATE = 0.1


class ThresholdPolicy(BaseModel):
    """What the served threshold is chosen for: the traffic's positive rate and error costs.

    Binary tasks only. Scores are calibrated on dev (Platt scaling), moved from
    dev's class prior to ``positive_rate``, and the served label is positive when
    that corrected probability reaches ``cost_ratio / (1 + cost_ratio)``, the
    Bayes decision for those costs.
    """

    model_config = _STRICT

    positive_rate: float | None = Field(
        DEFAULT_POSITIVE_RATE,
        gt=0.0,
        lt=1.0,
        description="expected share of positives in the served traffic; null keeps dev's "
        "own class prior (the training data's)",
    )
    cost_ratio: float = Field(
        1.0,
        ge=0.001,
        le=1000.0,
        description="cost of a false positive over the cost of a false negative",
    )


class ImpliedFigures(TypedDict, total=False):
    """What a threshold implies at the deployment prior, from the rates within each class.

    ``rule`` and ``threshold`` name the threshold when it is not the served one.
    """

    precision: float | None  # None when nothing would be flagged
    # Precision with TPR and FPR at their one-sided 95% Wilson bounds.
    precision_low: float | None
    recall: float
    flagged_rate: float  # share of the traffic at or above the threshold
    tpr: float
    fpr: float
    positives: int
    negatives: int
    rule: str
    threshold: float


class ThresholdSummary(TypedDict, total=False):
    """How the served threshold was chosen (``metadata.json``'s ``threshold_policy``).

    ``applied``, ``reason`` and ``threshold`` are always there; the rest only when
    the scores were calibrated and moved to the deployment prior.
    """

    applied: bool
    reason: str
    threshold: float | None
    rule: str
    policy: dict[str, float | None]
    deployment_prior: float
    deployment_prior_source: Literal["policy", "dev"]
    dev_prior: float
    train_prior: float | None
    calibration: dict[str, float | int | str]
    # served score = sigmoid(scale * logit(the model's own probability) + shift)
    logit_map: dict[str, float]
    # The positive rate the served scores are probabilities under.
    score_prior: float
    implied: dict[str, ImpliedFigures]  # "dev", and "test" once it was scored
    instead: ImpliedFigures | None  # dev's best-F1 threshold, for comparison
