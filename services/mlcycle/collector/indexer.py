"""The indexer: ``comments.raw``, ``votes.raw`` and ``votes.reviewed`` into the store.

Every record is decoded and validated again here, whoever produced it (the
REST API, an importer, or kcat straight into the topic): ``votes.raw`` is an
ingestion edge like ``POST /v1/votes``, so a vote there that claims a
reviewer (``human:``) or a labeling function (``lf:``) is refused; reviewers'
votes arrive on ``votes.reviewed``, which only the labeler writes, and so do
their retractions (a reviewer's undo): a retraction deletes the vote it names.

Valid records are upserted by id in one bulk write per collection, so a
redelivered batch never creates duplicates; within a batch the last record
for a vote id decides whether it is written or deleted, so a vote and its
retraction in one batch leave no vote, and deleting a missing vote is a no-op.
Records that fail validation, and records the store refuses (a mapping
conflict, an id it cannot hold), are handed back to the consumer loop, which
sends them to the topic's dead-letter twin with the reason; the rest of the
batch is stored, so one record can never stall its partition. A failure of
the store itself (unreachable) raises: the loop retries the batch and commits
nothing meanwhile.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from mlcycle.collector.metrics import DOCUMENTS_INDEXED, RECORDS_INVALID
from mlcycle.common.kafka.consumer import ConsumedRecord, Failure
from mlcycle.common.kafka.service import run_consumer_service
from mlcycle.common.settings import Settings, TopicNames
from mlcycle.common.store import COMMENTS, VOTES, Store
from mlcycle.contracts.comments import Comment, CrowdVote, Vote
from mlcycle.contracts.messages import InvalidRecord, decode_record
from mlcycle.contracts.retractions import VoteRetraction, decode_reviewed

log = logging.getLogger(__name__)

SERVICE = "collector-indexer"


RawRecord = Comment | Vote | VoteRetraction
Decoder = Callable[[bytes | None], RawRecord]
# The records of one batch bound for one collection, each beside the message it came in.
Decoded = list[tuple[ConsumedRecord, RawRecord]]


def indexed_topics(topics: TopicNames) -> list[str]:
    """The topics the indexer consumes."""
    return [topics.comments_raw, topics.votes_raw, topics.votes_reviewed]


class Indexer:
    """The consumer-loop handler: store every valid record, return the ones not stored."""

    def __init__(self, topics: TopicNames, store: Store) -> None:
        self.store = store
        self._routes: dict[str, tuple[str, Decoder]] = {
            topics.comments_raw: (COMMENTS, lambda value: decode_record(value, Comment)),
            topics.votes_raw: (VOTES, lambda value: decode_record(value, CrowdVote)),
            topics.votes_reviewed: (VOTES, decode_reviewed),
        }

    def __call__(self, records: list[ConsumedRecord]) -> list[Failure]:
        """Upsert the batch's valid records (durable on return); the rest become failures."""
        batches: dict[str, Decoded] = defaultdict(list)
        failures: list[Failure] = []
        for record in records:
            try:
                collection, decoded = self._decode(record)
            except InvalidRecord as exc:
                RECORDS_INVALID.labels(record.topic, exc.reason).inc()
                failures.append(Failure(record, str(exc)))
                continue
            batches[collection].append((record, decoded))
        for collection, decoded_records in batches.items():
            failures += self._store(collection, decoded_records)
        return failures

    def _store(self, collection: str, decoded: Decoded) -> list[Failure]:
        """Upsert one collection's records; the ones the store refused, as failures."""
        # Each id's last record decides: kept in order, a later vote revives a retracted one.
        last = {value.id: value for _, value in decoded}
        retracted = [doc_id for doc_id, value in last.items() if isinstance(value, VoteRetraction)]
        if retracted:
            self.store.delete(collection, retracted)
        written = [v.to_document() for v in last.values() if not isinstance(v, VoteRetraction)]
        # A failure of the store itself propagates: the loop must not commit what was not written.
        refused = self.store.upsert_each(collection, written)
        failures = [
            Failure(record, f"the store refused it: {refused[value.id]}")
            for record, value in decoded
            if value.id in refused
        ]
        for failure in failures:
            RECORDS_INVALID.labels(failure.record.topic, "store").inc()
        DOCUMENTS_INDEXED.labels(collection).inc(len(decoded) - len(failures))
        return failures

    def _decode(self, record: ConsumedRecord) -> tuple[str, RawRecord]:
        """The collection a record goes to, and the record validated from its value."""
        route = self._routes.get(record.topic)
        if route is None:
            raise InvalidRecord(f"no indexer for topic {record.topic!r}", reason="topic")
        collection, decode = route
        return collection, decode(record.value)


def run_indexer(settings: Settings) -> None:
    """Consume the raw topics into the store until SIGINT/SIGTERM, then commit and close.

    Serves ``/healthz``, ``/readyz`` and ``/metrics`` on the collector's
    ``indexer_metrics_port``.
    """
    topics, collector = settings.kafka.topics, settings.collector
    run_consumer_service(
        settings,
        service=SERVICE,
        topics=indexed_topics(topics),
        group_id=collector.indexer_group_id,
        metrics_port=collector.indexer_metrics_port,
        handler=lambda store, producer: Indexer(topics, store),
    )
