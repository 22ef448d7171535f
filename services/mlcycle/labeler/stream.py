"""Streaming labels: an item's label is updated as its votes arrive.

The stream consumes ``votes.raw``, ``votes.reviewed`` (reviewers' votes and their
retractions, which only the labeler writes) and ``comments.raw`` in its own consumer
group. For every item touched by a batch that is a known comment, it takes
the item's votes (those already stored plus those in the batch), aggregates
them by majority with human labels deciding, and writes the result as the
item's *live* label (run ``live-<task>``). A vote for an item that is not
stored yet is kept (the indexer stores every vote) and the item is labeled
when its comment arrives on ``comments.raw``.

Batch label runs remain the reference: they learn voter reliabilities and
bring in labeling functions. The live label answers "what do the votes say
right now" between runs.

Order of effects, for at-least-once without loss: events for new or changed
labels are acknowledged by Kafka first, then the labels are upserted, then
the loop commits. A crash in between redelivers the batch, which recomputes
the same labels and re-sends their events (a consumer sees a repeat, never a
gap).

What the stream reads from the store, the indexer wrote: a vote consumed in an
earlier batch (its item's comment had not arrived) may still be on its way to
the store when the comment comes. Before relabeling, the stream therefore waits
until the collector-indexer has committed past every record the stream has
consumed so far, on every partition of the three topics (after a restart, from the
stream group's own committed offsets on): each vote and comment it has seen is
then in the store. A batch whose wait times out raises, so nothing is
committed and the loop retries it later.

Schema-invalid records are the indexer's to dead-letter; the stream skips
them. What only the labeler can judge — a vote whose label is not a class of
its task — goes to ``votes.raw.dlq`` from here.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

from kafka import TopicPartition

from mlcycle.common.kafka.consumer import ConsumedRecord, Failure
from mlcycle.common.kafka.offsets import batch_bounds
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.progress import CommittedOffsets, IndexerProgress
from mlcycle.common.kafka.service import run_consumer_service
from mlcycle.common.settings import LabelerSettings, Settings, TopicNames
from mlcycle.common.store import Store
from mlcycle.contracts.comments import (
    HUMAN_PREFIX,
    Comment,
    CrowdVote,
    StoredComment,
    StoredVote,
    Vote,
    voter_kind,
)
from mlcycle.contracts.labels import Label, Provenance, label_id, live_run
from mlcycle.contracts.messages import InvalidRecord, decode_record
from mlcycle.contracts.repositories.comments import Comments
from mlcycle.contracts.repositories.labels import Labels
from mlcycle.contracts.repositories.votes import Votes
from mlcycle.contracts.retractions import VoteRetraction, decode_reviewed
from mlcycle.contracts.splits import split_of
from mlcycle.contracts.timestamps import utc_now
from mlcycle.labeler.aggregate import aggregate
from mlcycle.labeler.votes import VoteMatrix, class_of

log = logging.getLogger(__name__)

SERVICE = "labeler-stream"
# How long a batch waits for the indexer to store what the stream consumed before it is retried.
INDEXER_WAIT_S = 10.0

# The votes of one batch: item id -> vote id -> vote (a later vote replaces an earlier one),
# or None when the batch's last word on that vote is its retraction (a reviewer's undo).
BatchVotes = dict[str, dict[str, StoredVote | None]]


class LabelStream:
    """The consumer-loop handler: live labels for the items a batch touches.

    It reads ``topics.votes_raw``, ``topics.votes_reviewed`` and ``topics.comments_raw``
    and sends label events to ``topics.labels``; ``indexer`` says how far the
    collector-indexer has stored them.
    """

    def __init__(
        self,
        settings: LabelerSettings,
        topics: TopicNames,
        store: Store,
        producer: RecordProducer,
        indexer: IndexerProgress,
        *,
        indexer_wait_s: float = INDEXER_WAIT_S,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.producer = producer
        self.indexer = indexer
        self.indexer_wait_s = indexer_wait_s
        # The offset after the last record consumed, per partition: the indexer must be past it.
        self._consumed: dict[TopicPartition, int] | None = None
        self.comments = Comments(store)
        self.votes = Votes(store)
        self.labels = Labels(store)
        # A vote on votes.raw cannot claim a reserved voter kind: the indexer dead-letters those.
        # votes.reviewed also carries reviewers' retractions of their votes.
        self._vote_decoders: dict[str, Callable[[bytes | None], Vote | VoteRetraction]] = {
            topics.votes_raw: lambda value: decode_record(value, CrowdVote),
            topics.votes_reviewed: decode_reviewed,
        }

    def __call__(self, records: list[ConsumedRecord]) -> list[Failure]:
        failures: list[Failure] = []
        votes: BatchVotes = defaultdict(dict)
        comments: dict[str, StoredComment] = {}
        for record in records:
            if record.topic in self._vote_decoders:
                failure = self._take_vote(record, votes)
                if failure is not None:
                    failures.append(failure)
            elif record.topic == self.topics.comments_raw:
                try:
                    comment = decode_record(record.value, Comment)
                except InvalidRecord:
                    continue  # the indexer dead-letters it
                comments[comment.id] = StoredComment.model_validate(comment.to_document())
        self._wait_for_indexer(records)
        touched = set(votes) | set(comments)
        if touched:
            self._relabel(touched, votes, comments)
        return failures

    def _wait_for_indexer(self, records: list[ConsumedRecord]) -> None:
        """Return once the indexer has stored every record consumed so far (else Unavailable)."""
        if self._consumed is None:
            # Records consumed before a restart: the stream group committed past them.
            self._consumed = self.indexer.committed_by(self.settings.group_id)
        needed = dict(self._consumed)
        for tp, after in batch_bounds(records)[1].items():
            needed[tp] = max(after, needed.get(tp, 0))
        self.indexer.wait_past(needed, self.indexer_wait_s)
        # Kept only once stored: a batch whose wait raises is redelivered and counted then.
        self._consumed = needed

    def _take_vote(self, record: ConsumedRecord, votes: BatchVotes) -> Failure | None:
        try:
            decoded = self._vote_decoders[record.topic](record.value)
        except InvalidRecord:
            return None  # the indexer dead-letters it
        if isinstance(decoded, VoteRetraction):
            votes[decoded.item_id][decoded.id] = None
            return None
        vote = StoredVote.model_validate(decoded.to_document())
        n_classes = self.settings.classes_of(vote.task)
        if class_of(vote.label, n_classes) is None:
            return Failure(
                record,
                f"label {vote.label!r} is not a class of task {vote.task!r} "
                f"(an integer from 0 to {n_classes - 1})",
            )
        votes[vote.item_id][vote.id] = vote
        return None

    def _relabel(
        self, touched: set[str], batch_votes: BatchVotes, arriving: dict[str, StoredComment]
    ) -> None:
        items = sorted(touched)
        known = {**self.comments.get_many(items), **arriving}
        labels: list[Label] = []
        for item_id in items:
            comment = known.get(item_id)
            if comment is None:
                continue  # labeled when its comment arrives
            stored: dict[str, StoredVote | None] = {
                vote.id: vote for vote in self.votes.all_of_item(item_id)
            }
            all_votes = stored | batch_votes.get(item_id, {})
            standing = [vote for vote in all_votes.values() if vote is not None]
            labels.extend(self._labels_of(item_id, comment, standing))
        if not labels:
            return
        previous = self.labels.decisions([label.id for label in labels])
        fresh = [label for label in labels if label.changed_from(previous.get(label.id))]
        if fresh:
            self.producer.send_batch(self.topics.labels, (label.to_message() for label in fresh))
            self.labels.save_all(fresh)

    def _labels_of(
        self, item_id: str, comment: StoredComment, votes: Iterable[StoredVote]
    ) -> list[Label]:
        by_task: dict[str, list[StoredVote]] = defaultdict(list)
        for vote in votes:
            by_task[vote.task].append(vote)
        split = split_of(item_id, comment.metadata, self.settings.split_fractions)
        now = utc_now()
        return [
            label
            for task, task_votes in sorted(by_task.items())
            if (label := self._label(item_id, task, task_votes, split, now)) is not None
        ]

    def _label(
        self, item_id: str, task: str, votes: list[StoredVote], split: str, now: datetime
    ) -> Label | None:
        n_classes = self.settings.classes_of(task)
        matrix, _ = VoteMatrix.from_votes(votes, n_classes, item_ids=[item_id])
        if matrix.n_votes == 0:
            return None
        result = aggregate(matrix, "majority")
        probs = result.probs[0]
        label = int(result.labels[0])
        humans = [v for v in matrix.voter_ids if voter_kind(v) == "human"]
        if humans:
            decided = int(matrix.select(matrix.voter_mask("human")).counts()[0].argmax())
            accuracy = self.settings.human_accuracy
            probs = [(1.0 - accuracy) / (n_classes - 1)] * n_classes
            probs[decided] = accuracy
            label = decided
        probabilities = [round(float(p), 6) for p in probs]
        run = live_run(task)
        return Label(
            id=label_id(run, item_id),
            run=run,
            item_id=item_id,
            task=task,
            label=label,
            probability=probabilities[label],
            probabilities=probabilities,
            method="majority",
            n_votes=matrix.n_votes,
            provenance=Provenance(
                crowd=[v for v in matrix.voter_ids if voter_kind(v) == "crowd"],
                labeling_functions=[],
                humans=[v.removeprefix(HUMAN_PREFIX) for v in humans],
            ),
            split=split,
            created_at=now,
        )


def stream_topics(topics: TopicNames) -> list[str]:
    """The topics the live-label stream reads."""
    return [topics.votes_raw, topics.votes_reviewed, topics.comments_raw]


def run_stream(settings: Settings) -> None:
    """Keep live labels up to date until SIGINT/SIGTERM, then commit and close."""
    labeler, topics = settings.labeler, settings.kafka.topics
    indexer = CommittedOffsets(
        settings.kafka,
        settings.collector.indexer_group_id,
        waiting_for="live labels are computed from the votes it stored",
    )
    try:
        run_consumer_service(
            settings,
            service=SERVICE,
            topics=stream_topics(topics),
            group_id=labeler.group_id,
            metrics_port=labeler.stream_metrics_port,
            handler=lambda store, producer: LabelStream(labeler, topics, store, producer, indexer),
        )
    finally:
        indexer.close()
