"""A label run's diagnostics report: how each voter covers, overlaps, conflicts and scores.

The labeler computes it at the end of a run and keeps it on the run record
(``report``); ``GET /v1/label-runs/{id}`` shows it and the HTML page renders
it. Shares of a voter with no vote, and figures with nothing to measure, are
null rather than NaN, so the report is strict JSON.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class VoterStats(BaseModel):
    """One voter's figures (a crowd worker, a labeling function or a human reviewer)."""

    voter_id: str
    name: str = Field(description="the id without its kind prefix")
    kind: str = Field(description="crowd, lf or human")
    n_votes: int
    coverage: float | None = Field(description="voted items / all items")
    overlap: float | None = Field(description="share of its items some other voter voted on")
    conflict: float | None = Field(description="share of its items another voter disagreed on")
    accuracy: float | None = Field(description="share of its gold votes that match gold")
    n_gold: int = Field(description="its votes on gold items")
    class_counts: list[int] = Field(description="its votes per class")


class WrongSample(BaseModel):
    """An item on which a voter's vote differs from the gold label."""

    item_id: str
    text: str = Field(description="the item's text, cut to about 300 characters")
    vote: int
    gold: int


class LfErrorSummary(BaseModel):
    """What went wrong applying one labeling function during the run."""

    count: int = Field(description="items on which it raised or returned an invalid value")
    message: str = Field(description="the first error, 'ExcType: message'")
    items: list[str | int] = Field(description="the first few items concerned")


class LfStats(VoterStats):
    """A labeling function's figures, a sample of its wrong items, and its errors."""

    wrong_samples: list[WrongSample] = Field(default_factory=list)
    errors: LfErrorSummary | None = None


class Totals(BaseModel):
    """What the run diagnosed: items, votes, classes, and voters per kind."""

    items: int = 0
    votes: int = 0
    classes: int = 0
    voters: dict[str, int] = Field(default_factory=dict, description="voters per kind")


class GoldSummary(BaseModel):
    """The gold items: the crowd majority where at least ``min_votes`` crowd votes agree."""

    items: int = 0
    min_votes: int | None = None


class WorkerSummary(BaseModel):
    """Figures over all crowd workers, and the ``top`` ones by votes."""

    count: int = 0
    votes: int = 0
    median_votes: float | None = None
    mean_votes: float | None = None
    with_gold: int = 0
    median_accuracy: float | None = None
    mean_accuracy: float | None = None
    pooled_accuracy: float | None = None
    top: list[VoterStats] = Field(default_factory=list)


class ConflictMatrix(BaseModel):
    """Pairwise disagreement between labeling functions (null where they share no item)."""

    voters: list[str] = Field(default_factory=list)
    values: list[list[float | None]] = Field(default_factory=list)


class CalibrationBin(BaseModel):
    """Gold items whose top probability falls in ``[lower, upper)``."""

    lower: float
    upper: float
    confidence: float | None
    accuracy: float | None
    count: int


class Calibration(BaseModel):
    """Top-label reliability of the soft labels on the gold items, and their ECE."""

    items: int = 0
    bins: list[CalibrationBin] = Field(default_factory=list)
    ece: float | None = None


class DiagnosticsReport(BaseModel):
    """The whole diagnostics report of one label run."""

    totals: Totals = Field(default_factory=Totals)
    gold: GoldSummary = Field(default_factory=GoldSummary)
    labeling_functions: list[LfStats] = Field(default_factory=list)
    workers: WorkerSummary = Field(default_factory=WorkerSummary)
    humans: list[VoterStats] = Field(default_factory=list)
    conflict_matrix: ConflictMatrix = Field(default_factory=ConflictMatrix)
    calibration: Calibration = Field(default_factory=Calibration)
