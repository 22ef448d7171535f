"""The lineage answer: one typed part per link of the chain, and why a part is missing.

Free-form parts stay JSON objects as their owners recorded them: a comment's
metadata, a label run's parameters and figures, a model's metrics,
hyper-parameters, training settings and blessing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, StrictFloat, StrictInt

from mlcycle.contracts.comments import StoredComment
from mlcycle.contracts.explanations import Span
from mlcycle.contracts.features import TransformDescription
from mlcycle.contracts.label_runs import RunParams
from mlcycle.contracts.timestamps import Timestamp
from mlcycle.inference.schemas import JsonObject

# A label run's headline figures: counts, accuracy on gold, convergence.
RunFigure = bool | int | float | None


class VoteItem(BaseModel):
    """One vote on the comment, as stored (its ids aside)."""

    annotator_id: str
    label: StrictInt | StrictFloat
    task: str
    score: StrictFloat | StrictInt | None = None
    synthetic_annotator: bool = False
    source: str | None = None
    created_at: datetime | None = None


class VotesPart(BaseModel):
    """The comment's votes for the label task: counted, summarized, and the first listed."""

    task: str
    total: int = Field(description="votes on the comment for the task")
    by_label: dict[str, int] = Field(description="votes per label value")
    by_voter: dict[str, int] = Field(description="votes per voter kind: crowd, human, lf")
    mean_label: float | None = Field(description="the mean of the numeric labels")
    items: list[VoteItem] = Field(description="the votes listed (the first 100)")
    listed: int


class LabelRunPart(BaseModel):
    """The label run a label comes from: its status, parameters and main figures."""

    id: str
    status: str
    params: RunParams | None = None
    previous_run: str | None = None
    created_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    stats: dict[str, RunFigure] = Field(
        default_factory=dict, description="items, labeled, accuracy_on_gold, converged, iterations"
    )


class Derivation(BaseModel):
    """How a label was derived: the method, the posterior and the voters that counted."""

    method: str
    n_votes: int
    posterior: list[float]
    threshold: float | None = Field(None, description="the run's mean-threshold cut, if any")
    crowd: list[str] = Field(default_factory=list)
    humans: list[str] = Field(default_factory=list)
    labeling_functions: list[str] = Field(default_factory=list)


class LabelPart(BaseModel):
    """The comment's label, why that one was chosen, and how it was derived."""

    value: int
    task: str
    strategy: str
    probability: float
    split: str
    run: str
    chosen_from: str = Field(description="which label run was asked, and why")
    trained_on: bool = Field(description="whether the model was trained on this run's labels")
    created_at: Timestamp
    derivation: Derivation
    label_run: LabelRunPart | None = Field(description="null for the live label")


class TransformPart(TransformDescription):
    """The transform the model was trained with, and one line saying what it does."""

    summary: str


class SplitMetrics(BaseModel):
    """A model's headline figures on the dev and test splits."""

    dev: JsonObject | None = None
    test: JsonObject | None = None


class ModelPart(BaseModel):
    """The model version behind the score: registry state, metrics, parameters, blessing."""

    name: str
    version: int
    state: str | None = Field(description="the registry state; null when not registered")
    created_at: str | None = None
    job: str | None = None
    label_run: str | None = None
    transform: str | None = None
    classes: list[str | int] | None = None
    threshold: float | None = None
    selection_metric: str | None = None
    metrics: SplitMetrics
    hyperparameters: JsonObject | None = None
    training: JsonObject | None = None
    data: JsonObject | None = None
    git_revision: str | None = None
    blessing: JsonObject | None = None


class ScoreLineage(BaseModel):
    """The score at the end of the chain, and where it comes from."""

    score: float
    label: str
    threshold: float | None = None
    model_version: int
    transform_version: str
    probabilities: dict[str, float] | None = None
    source: str = Field(description="'stream': stored by the streaming scorer; 'scored_now'")
    scored_at: str | None = Field(None, description="stream only: when it was scored")
    cached: bool | None = Field(None, description="scored_now only: answered by the score cache")
    serving_model_version: int | None = Field(
        None, description="the version this service serves now (null when none is servable)"
    )
    spans: list[Span] | None = Field(
        None,
        description="the words of the comment that drove this score, by the version that "
        "gave it (null when it cannot explain: `missing` says why)",
    )


class Lineage(BaseModel):
    """One comment's prediction chain; null parts are explained in ``missing``."""

    id: str
    comment: StoredComment = Field(description="the stored comment, its score aside")
    votes: VotesPart
    label: LabelPart | None
    transform: TransformPart | None
    model: ModelPart | None
    score: ScoreLineage | None
    missing: dict[str, str] = Field(description="part name -> why it is null")

    def to_json(self) -> dict[str, Any]:
        """The answer as JSON types (what ``GET /v1/lineage/{id}`` sends).

        The score carries only the fields of its source (``scored_at`` from the
        stream, ``cached`` when scored now); a transform does not say whether it is
        the featurizer's current one, which this service does not know.
        """
        answer = self.model_dump(mode="json", exclude={"transform": {"current"}})
        if self.score is not None:
            answer["score"] = self.score.model_dump(mode="json", exclude_unset=True)
        return answer
