"""What the review page shows: the next item of the queue and everything known about it.

The queue is the latest finished label run's (``LabelRun.review_queue``), in priority order,
as ``GET /v1/review-queue`` serves it (:meth:`Votes.awaits_review`), less the ones this
browser has labeled or skipped since (sent as ``skip``: their votes may still be on their way).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mlcycle.common.settings import LabelerSettings
from mlcycle.common.store import Store
from mlcycle.contracts.comments import StoredComment
from mlcycle.contracts.label_runs import LabelIssue, LabelRun, ReviewItem
from mlcycle.contracts.repositories.comments import Comments
from mlcycle.contracts.repositories.label_runs import LabelIssues, LabelRuns
from mlcycle.contracts.repositories.scores import CommentScores
from mlcycle.contracts.repositories.votes import Votes
from mlcycle.labeler.console.explain import Explainer
from mlcycle.labeler.console.text import TextPiece, highlighted

# Comments looked up at once while filtering the queue by source.
LOOKUP_CHUNK = 50


@dataclass(frozen=True)
class QueueFilters:
    """Which part of the queue a reviewer works on (None: any)."""

    task: str
    split: str | None = None
    source: str | None = None
    reason: str | None = None

    def keeps(self, item: ReviewItem) -> bool:
        if self.split and item.split != self.split:
            return False
        return not self.reason or self.reason in item.reasons


@dataclass(frozen=True)
class VoteRow:
    """One vote on the item, and how far its voter is trusted (from the run's diagnostics)."""

    voter: str
    kind: str
    label: int | float
    reliability: float | None


@dataclass(frozen=True)
class ReviewCard:
    """One queue item as the review page shows it."""

    item: ReviewItem
    run_id: str
    task: str
    source: str | None
    pieces: list[TextPiece]
    votes: list[VoteRow]
    classes: list[str]
    model_score: float | None = None
    model_version: int | None = None
    explanation_note: str | None = None
    has_spans: bool = False
    suspicion: LabelIssue | None = None  # why the run suspects its label, when it does


@dataclass
class QueueView:
    """The latest run of a task, the item to show (if any) and how many match the filters."""

    run: LabelRun | None
    card: ReviewCard | None = None
    matching: int = 0


def class_names(task: str, n_classes: int) -> list[str]:
    """What each class is called on the page: ``not toxicity``/``toxicity`` for a binary task."""
    if n_classes == 2:
        return [f"not {task}", task]
    return [f"class {index}" for index in range(n_classes)]


class ReviewDesk:
    """Reads the queue, the comments, the votes and the run's reliabilities from the store."""

    def __init__(self, settings: LabelerSettings, store: Store, explainer: Explainer) -> None:
        self.settings = settings
        self.runs = LabelRuns(store)
        self.issues = LabelIssues(store)
        self.comments = Comments(store)
        self.votes = Votes(store)
        self.scores = CommentScores(store)
        self.explainer = explainer

    def view(
        self, filters: QueueFilters, skip: Sequence[str] = (), item_id: str | None = None
    ) -> QueueView:
        """The first queue item matching ``filters`` not reviewed nor in ``skip`` (or
        ``item_id`` itself, as after an undo)."""
        run = self.runs.latest(filters.task)
        if run is None:
            return QueueView(None)
        queue = [item for item in run.review_queue or [] if filters.keeps(item)]
        view = QueueView(run, matching=len(queue))
        skipped = set(skip)
        if item_id is not None:
            wanted = [item for item in run.review_queue or [] if item.item_id == item_id]
            candidates: Iterator[tuple[ReviewItem, StoredComment]] = self._with_comments(wanted)
        else:
            fresh = [item for item in queue if item.item_id not in skipped]
            candidates = self._with_comments(fresh)
        for item, comment in candidates:
            if filters.source and comment.source != filters.source:
                continue
            if item_id is None and not self.votes.awaits_review(item):
                continue
            view.card = self._card(run, item, comment, filters.task)
            break
        return view

    def _with_comments(
        self, items: Sequence[ReviewItem]
    ) -> Iterator[tuple[ReviewItem, StoredComment]]:
        for start in range(0, len(items), LOOKUP_CHUNK):
            chunk = items[start : start + LOOKUP_CHUNK]
            found = self.comments.get_many([item.item_id for item in chunk])
            for item in chunk:
                if item.item_id in found:
                    yield item, found[item.item_id]

    def _card(
        self, run: LabelRun, item: ReviewItem, comment: StoredComment, task: str
    ) -> ReviewCard:
        explanation = self.explainer.explain(comment.text, item.item_id)
        prediction = explanation.prediction
        spans = (prediction.spans or []) if prediction else []
        stored_score = self.scores.get(item.item_id)
        score = stored_score.score if stored_score else (prediction.score if prediction else None)
        version = (
            stored_score.model_version
            if stored_score
            else (prediction.model_version if prediction else None)
        )
        note = explanation.unavailable
        return ReviewCard(
            item=item,
            run_id=run.id,
            task=task,
            source=comment.source,
            pieces=highlighted(comment.text, spans),
            votes=self._vote_rows(run, item.item_id, task),
            classes=class_names(task, self.settings.classes_of(task)),
            model_score=score,
            model_version=version,
            explanation_note=(f"Explanations are unavailable: {note}." if note else None),
            has_spans=bool(spans),
            suspicion=(
                self.issues.of_item(run.id, item.item_id)
                if "suspected_error" in item.reasons
                else None
            ),
        )

    def _vote_rows(self, run: LabelRun, item_id: str, task: str) -> list[VoteRow]:
        reliability = self._reliabilities(run)
        rows = []
        for vote in self.votes.of_item(item_id, task):
            kind = vote.voter_kind
            trust = reliability.get(vote.annotator_id)
            if trust is None and kind == "human":
                trust = self.settings.human_accuracy  # a reviewer's fixed weight
            rows.append(VoteRow(vote.annotator_id, kind, vote.label, trust))
        return rows

    @staticmethod
    def _reliabilities(run: LabelRun) -> dict[str, float]:
        """Each voter's accuracy on gold items, as the run's diagnostics measured it."""
        report = run.report
        if report is None:
            return {}
        voters = [*report.labeling_functions, *report.workers.top, *report.humans]
        return {v.voter_id: v.accuracy for v in voters if v.accuracy is not None}
