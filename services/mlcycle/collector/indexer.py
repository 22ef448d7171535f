"""The indexer: ``comments.raw`` and ``votes.raw`` into the store, idempotently.

Every record is decoded and validated again here, whoever produced it (the
REST API, an importer, or kcat straight into the topic). Valid records are
upserted by id in one bulk write per collection, so a redelivered batch never
creates duplicates; invalid ones are handed back to the consumer loop, which
sends them to the topic's dead-letter twin and goes on.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from mlcycle.collector.metrics import DOCUMENTS_INDEXED, RECORDS_INVALID
from mlcycle.common.kafka.consumer import ConsumedRecord, Failure
from mlcycle.common.kafka.service import run_consumer_service
from mlcycle.common.settings import Settings, TopicNames
from mlcycle.common.store import COMMENTS, VOTES, Store
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.contracts.messages import InvalidRecord, decode_record

log = logging.getLogger(__name__)

SERVICE = "collector-indexer"


RawRecord = Comment | Vote


class Indexer:
    """The consumer-loop handler: store every valid record, return the invalid ones."""

    def __init__(self, topics: TopicNames, store: Store) -> None:
        self.store = store
        self._routes: dict[str, tuple[str, type[RawRecord]]] = {
            topics.comments_raw: (COMMENTS, Comment),
            topics.votes_raw: (VOTES, Vote),
        }

    def __call__(self, records: list[ConsumedRecord]) -> list[Failure]:
        """Upsert the batch's valid records (durable on return); the rest become failures."""
        batches: dict[str, list[RawRecord]] = defaultdict(list)
        failures: list[Failure] = []
        for record in records:
            try:
                collection, decoded = self._decode(record)
            except InvalidRecord as exc:
                RECORDS_INVALID.labels(record.topic, exc.reason).inc()
                failures.append(Failure(record, str(exc)))
                continue
            batches[collection].append(decoded)
        for collection, decoded_records in batches.items():
            # A store failure propagates: the loop must not commit what was not written.
            self.store.upsert(collection, [r.to_document() for r in decoded_records])
            DOCUMENTS_INDEXED.labels(collection).inc(len(decoded_records))
        return failures

    def _decode(self, record: ConsumedRecord) -> tuple[str, RawRecord]:
        """The collection a record goes to, and the record validated from its value."""
        route = self._routes.get(record.topic)
        if route is None:
            raise InvalidRecord(f"no indexer for topic {record.topic!r}", reason="topic")
        collection, model = route
        return collection, decode_record(record.value, model)


def run_indexer(settings: Settings) -> None:
    """Consume both raw topics into the store until SIGINT/SIGTERM, then commit and close.

    Serves ``/healthz``, ``/readyz`` and ``/metrics`` on the collector's
    ``indexer_metrics_port``.
    """
    topics, collector = settings.kafka.topics, settings.collector
    run_consumer_service(
        settings,
        service=SERVICE,
        topics=[topics.comments_raw, topics.votes_raw],
        group_id=collector.indexer_group_id,
        metrics_port=collector.indexer_metrics_port,
        handler=lambda store, producer: Indexer(topics, store),
    )
