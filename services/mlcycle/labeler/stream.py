"""Streaming labels: an item's label is updated as its votes arrive.

The stream consumes ``votes.raw`` and ``comments.raw`` in its own consumer
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

Schema-invalid records are the indexer's to dead-letter; the stream skips
them. What only the labeler can judge — a vote whose label is not a class of
its task — goes to ``votes.raw.dlq`` from here.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson

from mlcycle.common.kafka.consumer import ConsumedRecord, Failure
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.service import run_consumer_service
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, LABELS, VOTES, Store
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.contracts.messages import InvalidRecord, decode_record
from mlcycle.contracts.splits import split_of
from mlcycle.labeler.aggregate import aggregate
from mlcycle.labeler.labeling import changed
from mlcycle.labeler.votes import HUMAN_PREFIX, VoteMatrix, class_of, voter_kind

log = logging.getLogger(__name__)

SERVICE = "labeler-stream"


def live_run(task: str) -> str:
    """The run id live labels of ``task`` are written under."""
    return f"live-{task}"


class LabelStream:
    """The consumer-loop handler: live labels for the items a batch touches."""

    def __init__(self, settings: Settings, store: Store, producer: RecordProducer) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer

    def __call__(self, records: list[ConsumedRecord]) -> list[Failure]:
        failures: list[Failure] = []
        votes: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # item -> id -> vote
        comments: dict[str, dict[str, Any]] = {}
        for record in records:
            if record.topic == self.settings.topics.votes_raw:
                failure = self._take_vote(record, votes)
                if failure is not None:
                    failures.append(failure)
            elif record.topic == self.settings.topics.comments_raw:
                try:
                    doc = decode_record(record.value, Comment).to_document()
                except InvalidRecord:
                    continue  # the indexer dead-letters it
                comments[doc["id"]] = doc
        touched = set(votes) | set(comments)
        if touched:
            self._relabel(touched, votes, comments)
        return failures

    def _take_vote(
        self, record: ConsumedRecord, votes: dict[str, dict[str, dict[str, Any]]]
    ) -> Failure | None:
        try:
            vote = decode_record(record.value, Vote).to_document()
        except InvalidRecord:
            return None  # the indexer dead-letters it
        n_classes = self.settings.classes_of(vote["task"])
        if class_of(vote["label"], n_classes) is None:
            return Failure(
                record,
                f"label {vote['label']!r} is not a class of task {vote['task']!r} "
                f"(an integer from 0 to {n_classes - 1})",
            )
        votes[vote["item_id"]][vote["id"]] = vote
        return None

    def _relabel(
        self,
        touched: set[str],
        batch_votes: dict[str, dict[str, dict[str, Any]]],
        arriving: dict[str, dict[str, Any]],
    ) -> None:
        items = sorted(touched)
        known = {**self.store.get_many(COMMENTS, items), **arriving}
        labels = []
        for item_id in items:
            comment = known.get(item_id)
            if comment is None:
                continue  # labeled when its comment arrives
            stored = self.store.scan(VOTES, filters={"item_id": item_id})
            all_votes = {v["id"]: v for v in stored} | batch_votes.get(item_id, {})
            labels.extend(self._labels_of(item_id, comment, all_votes.values()))
        if not labels:
            return
        previous = self.store.get_many(LABELS, [doc["id"] for doc in labels])
        fresh = [doc for doc in labels if changed(doc, previous.get(doc["id"]))]
        if fresh:
            self.producer.send_batch(
                self.settings.topics.labels, ((d["item_id"], orjson.dumps(d)) for d in fresh)
            )
            self.store.upsert(LABELS, fresh)

    def _labels_of(self, item_id: str, comment: dict[str, Any], votes: Any) -> list[dict[str, Any]]:
        by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for vote in votes:
            by_task[vote["task"]].append(vote)
        split = split_of(item_id, comment.get("metadata"), self.settings.split_fractions)
        now = datetime.now(UTC).isoformat()
        return [
            doc
            for task, task_votes in sorted(by_task.items())
            if (doc := self._label(item_id, task, task_votes, split, now)) is not None
        ]

    def _label(
        self, item_id: str, task: str, votes: list[dict[str, Any]], split: str, now: str
    ) -> dict[str, Any] | None:
        n_classes = self.settings.classes_of(task)
        matrix, _ = VoteMatrix.from_documents(votes, n_classes, item_ids=[item_id])
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
        return {
            "id": f"{run}:{item_id}",
            "run": run,
            "item_id": item_id,
            "task": task,
            "label": label,
            "probability": probabilities[label],
            "probabilities": probabilities,
            "method": "majority",
            "n_votes": matrix.n_votes,
            "provenance": {
                "crowd": [v for v in matrix.voter_ids if voter_kind(v) == "crowd"],
                "labeling_functions": [],
                "humans": [v.removeprefix(HUMAN_PREFIX) for v in humans],
            },
            "split": split,
            "created_at": now,
        }


def run_stream(settings: Settings) -> None:
    """Keep live labels up to date until SIGINT/SIGTERM, then commit and close."""
    run_consumer_service(
        settings,
        service=SERVICE,
        topics=[settings.topics.votes_raw, settings.topics.comments_raw],
        group_id=settings.labeler_group_id,
        metrics_port=settings.labeler_stream_metrics_port,
        handler=lambda store, producer: LabelStream(settings, store, producer),
    )
