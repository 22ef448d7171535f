"""Stream imported records into their Kafka topics, in batches, in constant memory.

Every record is keyed by its id and acknowledged by the broker before the
next batch is read, so a crash mid-import loses nothing that was reported as
sent, and a re-run only overwrites (the store upserts by id).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import TopicNames
from mlcycle.contracts.comments import Comment, Vote

DEFAULT_BATCH = 2000


@dataclass
class PublishCounts:
    """How many records of each kind the broker acknowledged."""

    comments: int = 0
    votes: int = 0

    @property
    def total(self) -> int:
        return self.comments + self.votes


def publish(
    records: Iterable[Comment | Vote],
    producer: RecordProducer,
    topics: TopicNames,
    *,
    batch_size: int = DEFAULT_BATCH,
    on_batch: Callable[[int], None] | None = None,
) -> PublishCounts:
    """Send ``records`` to their raw topics among ``topics``; ``on_batch(n)`` after each ack."""
    counts = PublishCounts()
    comments: list[tuple[str, bytes]] = []
    votes: list[tuple[str, bytes]] = []

    def flush() -> None:
        if comments:
            counts.comments += producer.send_batch(topics.comments_raw, comments)
        if votes:
            counts.votes += producer.send_batch(topics.votes_raw, votes)
        if on_batch is not None and (comments or votes):
            on_batch(len(comments) + len(votes))
        comments.clear()
        votes.clear()

    for record in records:
        if isinstance(record, Comment):
            comments.append(record.to_message())
        else:
            votes.append(record.to_message())
        if len(comments) + len(votes) >= batch_size:
            flush()
    flush()
    return counts
