"""Label runs: what a run is asked to do, how far it got, and what it found.

A label run is one batch labeling of a task's items, kept in the ``runs``
collection under kind ``label``. Its id sorts by creation time
(``lr-20261124T181500-1a2b3c``); its labels are ``<run id>:<item id>`` in the
``labels`` collection. The task's latest succeeded run is named by a small
pointer record (kind ``label-pointer``), so readers never scan run history.
Its suspected label errors (confident learning) are records of kind
``label-issue`` in the same collection, ``<run id>:issue:<rank>``, most suspect first.

Fields a run has not reached yet (``started_at``, ``stats``, ``error``...) are
absent from its stored form, not null: a record reads as far as its run got.
The parts it has reached (``params``, ``progress``, ``stats``) are complete.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlcycle.common.store.base import Document
from mlcycle.contracts.label_diagnostics import DiagnosticsReport
from mlcycle.contracts.repository import StoredRecord
from mlcycle.contracts.timestamps import Timestamp

LABEL_RUN_KIND = "label"
LATEST_RUN_KIND = "label-pointer"
RUN_ITEMS_KIND = "label-run-items"
LABEL_ISSUE_KIND = "label-issue"

Strategy = Literal["mean_threshold", "majority", "dawid_skene", "anchored_dawid_skene"]
# Dawid-Skene anchored at the crowd's majority: where annotator groups disagree, full EM's
# latent class drifts from what most annotators say (decision 0021).
DEFAULT_STRATEGY: Strategy = "anchored_dawid_skene"
RunStatus = Literal["queued", "running", "succeeded", "failed"]
# Why an item is in the review queue: its label model is unsure of it; confident learning
# suspects its label is wrong; or its label disagrees with a moderator's decision.
ReviewReason = Literal["uncertain", "suspected_error", "disagrees_with_moderators"]
UNFINISHED: tuple[RunStatus, ...] = ("queued", "running")


class RunParams(BaseModel):
    """What a label run is asked to do (the body of ``POST /v1/label-runs``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = DEFAULT_STRATEGY
    task: str = Field(default="toxicity", min_length=1, max_length=128)
    threshold: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="mean_threshold's cut (default from settings)"
    )
    labeling_functions: list[str] | None = Field(
        default=None,
        description="LF names to use as voters; omitted means every LF of the task, [] none",
    )
    gold_min_votes: int | None = Field(
        default=None, ge=1, description="crowd votes that make an item's majority gold"
    )


class RunProgress(BaseModel):
    """Where a run is: its phase and, while writing, the chunks of items done."""

    phase: str = "queued"
    chunks_done: int = 0
    chunks_total: int | None = Field(
        default=None, description="set once the run's item snapshot (one record a chunk) is stored"
    )
    items: int | None = Field(default=None, description="items read, once aggregating")
    events: int = Field(default=0, description="label events published so far")


class VoteCounts(BaseModel):
    """What became of the votes a run read."""

    read: int = 0
    out_of_range: int = Field(default=0, description="labels that are not a class of the task")
    unknown_item: int = Field(default=0, description="votes for items not stored yet")
    used: int = 0
    lf: int = Field(default=0, description="votes cast by labeling functions")


class BaselineStats(BaseModel):
    """The plain majority over the same voters, next to the run's strategy."""

    method: str = "majority"
    accuracy_on_gold: float | None = None
    agreement_with_strategy: float | None = None


class RunStats(BaseModel):
    """A finished run's figures: counts, class balance per split, accuracy on gold."""

    items: int = 0
    labeled: int = 0
    unlabeled: int = 0
    votes: VoteCounts = Field(default_factory=VoteCounts)
    items_with_crowd_votes: int = 0
    items_with_only_lf_votes: int = 0
    items_reviewed_by_humans: int = 0
    class_balance: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="split -> class -> labeled items"
    )
    gold_items: int = 0
    accuracy_on_gold: float | None = None
    baseline: BaselineStats = Field(default_factory=BaselineStats)
    iterations: int = 0
    converged: bool = False
    events: int = Field(default=0, description="label events published")
    seconds: float | None = None


class ReviewItem(BaseModel):
    """An item a reviewer's label would help most, and why it is in the queue."""

    item_id: str
    priority: float = Field(
        description="the queue's order (labeler.labeling.review_queue): 1 + p for a label that "
        "overrides a moderator, else max((1 - max p) / (1 + n_votes), 1 - label quality)"
    )
    label: int
    probability: float
    n_votes: int
    split: str
    reasons: list[ReviewReason] = Field(
        default_factory=lambda: ["uncertain"], description="why the item is in the queue"
    )


class LabelIssuesSummary(BaseModel):
    """What the search for suspected label errors (confident learning) did on a run.

    ``skipped`` says why a run has no suspects when the classifier could not be fit
    (one class only, too few items of a class); the run itself succeeds regardless.
    """

    checked: int = Field(default=0, description="labeled items given out-of-sample probabilities")
    fitted_on: int = Field(
        default=0, description="items the cross-validated fits saw (a seeded sample beyond a cap)"
    )
    folds: int = 0
    transform: str | None = Field(
        default=None, description="the featurization: the current transform's version, or 'fit'"
    )
    suspects: int = Field(default=0, description="items flagged as suspected label errors")
    stored: int = Field(default=0, description="suspects stored (the most suspect, up to a cap)")
    skipped: str | None = Field(default=None, description="why no suspects were looked for")
    seconds: float | None = None


class LabelIssue(StoredRecord):
    """One suspected label error of a run (id ``<run>:issue:<rank>``, most suspect first)."""

    kind: Literal["label-issue"] = LABEL_ISSUE_KIND
    run: str
    rank: int
    item_id: str
    given_label: int = Field(description="the run's label")
    suggested_label: int = Field(description="the class the out-of-sample classifier prefers")
    quality: float = Field(description="label quality score in [0, 1]: low means likely wrong")
    probability: float = Field(description="the out-of-sample probability of the given label")
    probabilities: list[float] = Field(description="out-of-sample probability of each class")

    @staticmethod
    def id_of(run_id: str, rank: int) -> str:
        """The record id of run ``run_id``'s suspect at ``rank`` (0 = most suspect)."""
        return f"{run_id}:issue:{rank:07d}"


class LabelRun(StoredRecord):
    """One label run's record, from queued to succeeded or failed.

    The runner updates it field by field as the run goes; each assignment is
    validated, so a wrong value fails where it is set, not when it is stored.
    """

    model_config = ConfigDict(validate_assignment=True)

    kind: Literal["label"] = LABEL_RUN_KIND
    task: str
    status: RunStatus
    params: RunParams | None = None
    previous_run: str | None = Field(
        default=None, description="the run whose labels changes are counted from"
    )
    started_by: str | None = Field(
        default=None, description="the name of the API key that started it (anonymous: no keys)"
    )
    progress: RunProgress = Field(default_factory=RunProgress)
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    stats: RunStats | None = None
    report: DiagnosticsReport | None = None
    review_queue: list[ReviewItem] | None = None
    label_issues: LabelIssuesSummary | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the run finished and its labels are complete."""
        return self.status == "succeeded"

    @property
    def finished(self) -> bool:
        """Whether the run ended, well or not."""
        return self.status not in UNFINISHED

    def to_document(self) -> Document:
        """The stored form: the fields the run has reached, always with its id and kind."""
        reached = self.model_dump(mode="json", include=set(self.model_fields_set))
        return {"id": self.id, "kind": self.kind, **reached}


class LatestLabelRun(StoredRecord):
    """The pointer to a task's latest succeeded label run (id ``latest-label-run-<task>``)."""

    kind: Literal["label-pointer"] = LATEST_RUN_KIND
    run: str

    @staticmethod
    def id_of(task: str) -> str:
        """The pointer record's id for ``task``."""
        return f"latest-label-run-{task}"

    def to_document(self) -> Document:
        """The stored form: id, kind, and the run it points to."""
        return {"id": self.id, "kind": self.kind, "run": self.run}


class RunItems(StoredRecord):
    """One chunk of a label run's item snapshot: the ids the chunk labels, in id order.

    Stored when the run starts writing (id ``<run>:items:<chunk>``), so a resumed run
    labels exactly the items it started with, chunk by chunk, however the corpus grew
    meanwhile. One record per chunk keeps each small; the snapshot costs a few bytes
    per item, less than the label the run writes for it.
    """

    kind: Literal["label-run-items"] = RUN_ITEMS_KIND
    run: str
    chunk: int
    item_ids: list[str]

    @staticmethod
    def id_of(run_id: str, chunk: int) -> str:
        """The record id of chunk ``chunk`` of run ``run_id``."""
        return f"{run_id}:items:{chunk:06d}"
