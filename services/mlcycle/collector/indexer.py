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
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import ValidationError

from mlcycle.collector.metrics import DOCUMENTS_INDEXED, RECORDS_INVALID
from mlcycle.common.http import (
    BackgroundServer,
    add_health_routes,
    install_error_handlers,
    install_metrics,
)
from mlcycle.common.kafka.admin import ensure_topics
from mlcycle.common.kafka.consumer import ConsumedRecord, ConsumerLoop, Failure
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, VOTES, Store, open_store
from mlcycle.records import Comment, Vote

log = logging.getLogger(__name__)

SERVICE = "collector-indexer"


class InvalidRecord(Exception):
    """A consumed record that cannot be stored; the message is what the dead letter carries."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _comment_document(value: Any) -> dict[str, Any]:
    return Comment.model_validate(value).to_document()


def _vote_document(value: Any) -> dict[str, Any]:
    return Vote.model_validate(value).to_document()


def decode_document(
    value: bytes | None, to_document: Callable[[Any], dict[str, Any]]
) -> dict[str, Any]:
    """The store document of one record value, or InvalidRecord saying why there is none."""
    if not value:
        raise InvalidRecord("empty record value", reason="empty")
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"invalid JSON: {exc}", reason="json") from None
    try:
        return to_document(parsed)
    except ValidationError as exc:
        raise InvalidRecord(f"invalid record: {_flat_errors(exc)}", reason="schema") from None


def _flat_errors(exc: ValidationError) -> str:
    # One line, "field: message; field: message", for the dead letter's error text.
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<record>'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    )


class Indexer:
    """The consumer-loop handler: store every valid record, return the invalid ones."""

    def __init__(self, settings: Settings, store: Store) -> None:
        topics = settings.topics
        self.store = store
        self._routes: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
            topics.comments_raw: (COMMENTS, _comment_document),
            topics.votes_raw: (VOTES, _vote_document),
        }

    def __call__(self, records: list[ConsumedRecord]) -> list[Failure]:
        """Upsert the batch's valid records (durable on return); the rest become failures."""
        batches: dict[str, list[dict[str, Any]]] = defaultdict(list)
        failures: list[Failure] = []
        for record in records:
            try:
                collection, document = self._document(record)
            except InvalidRecord as exc:
                RECORDS_INVALID.labels(record.topic, exc.reason).inc()
                failures.append(Failure(record, str(exc)))
                continue
            batches[collection].append(document)
        for collection, documents in batches.items():
            # A store failure propagates: the loop must not commit what was not written.
            self.store.upsert(collection, documents)
            DOCUMENTS_INDEXED.labels(collection).inc(len(documents))
        return failures

    def _document(self, record: ConsumedRecord) -> tuple[str, dict[str, Any]]:
        route = self._routes.get(record.topic)
        if route is None:
            raise InvalidRecord(f"no indexer for topic {record.topic!r}", reason="topic")
        collection, to_document = route
        return collection, decode_document(record.value, to_document)


def health_app(store: Store) -> FastAPI:
    """``/healthz``, ``/readyz`` (the store answers) and ``/metrics`` of the indexer process."""
    app = FastAPI(title="mlcycle collector-indexer", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    install_metrics(app, SERVICE)
    add_health_routes(app, lambda: {"store": store.ping()})
    return app


def run_indexer(settings: Settings) -> None:
    """Consume both raw topics into the store until SIGINT/SIGTERM, then commit and close.

    Serves ``/healthz``, ``/readyz`` and ``/metrics`` on ``settings.indexer_metrics_port``.
    """
    ensure_topics(settings)
    store = open_store(settings)
    producer = RecordProducer(settings, client_id=SERVICE)
    health = BackgroundServer(health_app(store), settings.host, settings.indexer_metrics_port)
    try:
        health.start()
        loop = ConsumerLoop(
            settings,
            topics=[settings.topics.comments_raw, settings.topics.votes_raw],
            group_id=settings.indexer_group_id,
            handler=Indexer(settings, store),
            service=SERVICE,
            producer=producer,
        )
        log.info("indexer started", extra={"group": settings.indexer_group_id})
        loop.run(install_signal_handlers=True)
    finally:
        health.stop()
        producer.close()
        store.close()
