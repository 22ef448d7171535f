"""The collector's REST API: comments and votes into Kafka, comments back out of the store.

``POST`` answers 202 only once the broker has acknowledged every record of the
batch; the indexer then writes them into the store, so a comment is readable by
``GET`` shortly after it was accepted (eventual consistency, usually well
under a second).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from mlcycle import __version__
from mlcycle.collector.ingest import encode_records, parse_body, validate_records
from mlcycle.collector.metrics import RECORDS_ACCEPTED, REQUESTS_REJECTED
from mlcycle.common.errors import MlcycleError
from mlcycle.common.http import (
    OrjsonResponse,
    RouteAccess,
    add_health_routes,
    error_responses,
    exposed_key_ring,
    install_edge,
    key_ring,
    read_body,
    serve_app,
)
from mlcycle.common.kafka.admin import ensure_topics, wait_for_broker
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.keys import KeyRing
from mlcycle.common.settings import EdgeSettings, KafkaSettings, Settings, TopicNames
from mlcycle.common.store import Store, open_store
from mlcycle.common.store.base import MAX_QUERY_CHARS
from mlcycle.contracts.access import route_scopes
from mlcycle.contracts.comments import Comment, CrowdVote, Vote
from mlcycle.contracts.repositories.comments import Comments

log = logging.getLogger(__name__)

SERVICE = "collector"


class Producer(Protocol):
    """What the API needs from the Kafka producer (``RecordProducer`` in production)."""

    def send_batch(self, topic: str, items: Any, timeout_s: float = 30) -> int: ...


# -- response bodies ----------------------------------------------------------------------------


class Accepted(BaseModel):
    """The batch is in Kafka: every record was acknowledged by the broker."""

    accepted: int = Field(description="records accepted (the whole batch)")


class CommentDoc(BaseModel):
    """A stored comment."""

    model_config = ConfigDict(extra="allow")

    id: str
    text: str
    source: str | None = None
    created_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class CommentPage(BaseModel):
    """One page of comments; pass ``next_cursor`` back as ``cursor`` (null on the last page)."""

    items: list[CommentDoc]
    next_cursor: str | None
    total: int | None = None


class Stats(BaseModel):
    """Document counts per store collection."""

    counts: dict[str, int]


# -- ingest -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordKind:
    """One kind of record the API ingests: its model and the topic it goes to."""

    name: str
    model: type[Comment] | type[Vote]
    topic: str


class Ingestor:
    """Parses, validates and produces one batch; runs in a worker thread (it blocks on Kafka)."""

    def __init__(self, edge: EdgeSettings, producer: Producer) -> None:
        self.edge = edge
        self.producer = producer

    def accept(self, kind: RecordKind, body: bytes, content_type: str | None) -> tuple[int, str]:
        """Produce the whole batch or nothing; returns the count and a Server-Timing value."""
        started = time.perf_counter()
        try:
            items = parse_body(body, content_type, max_records=self.edge.max_batch_records)
            records = validate_records(kind.model, items)
        except MlcycleError as exc:
            REQUESTS_REJECTED.labels(kind.name, exc.code).inc()
            raise
        encoded = encode_records(records)
        validated = time.perf_counter()
        self.producer.send_batch(kind.topic, encoded)
        produced = time.perf_counter()
        RECORDS_ACCEPTED.labels(kind.name).inc(len(records))
        timing = (
            f"validate;dur={(validated - started) * 1000:.2f}, "
            f"produce;dur={(produced - validated) * 1000:.2f}"
        )
        return len(records), timing


def _record_body(schema_name: str, max_records: int) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of an ingest endpoint (it reads the raw body itself)."""
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    batch = {"type": "array", "items": ref, "minItems": 1, "maxItems": max_records}
    return {
        "required": True,
        "description": (
            f"A JSON array of {schema_name} records (1 to {max_records}), or a single "
            f"{schema_name} object, or NDJSON: one {schema_name} object per line, blank lines "
            "ignored (each array item of the NDJSON schema is one line). The batch is all or "
            "nothing: one invalid record rejects it with 422."
        ),
        "content": {
            "application/json": {"schema": {"anyOf": [batch, ref]}},
            "application/x-ndjson": {"schema": batch},
        },
    }


def _ingest_router(
    edge: EdgeSettings, topics: TopicNames, producer: Producer, access: RouteAccess
) -> APIRouter:
    ingestor = Ingestor(edge, producer)
    router = APIRouter(prefix="/v1", tags=["ingest"], dependencies=access.dependencies())
    comments = RecordKind("comments", Comment, topics.comments_raw)
    # Votes from outside are crowd votes: a reviewer or labeling-function id is refused (422).
    votes = RecordKind("votes", CrowdVote, topics.votes_raw)
    errors = error_responses(400, 401, 403, 413, 422, 503)

    async def ingest(kind: RecordKind, request: Request) -> OrjsonResponse:
        body = await read_body(request, edge.max_body_bytes)
        content_type = request.headers.get("content-type")
        count, timing = await run_in_threadpool(ingestor.accept, kind, body, content_type)
        return OrjsonResponse(
            {"accepted": count}, status_code=202, headers={"Server-Timing": timing}
        )

    @router.post(
        "/comments",
        status_code=202,
        response_model=Accepted,
        responses=errors,
        summary="Ingest a batch of comments",
        openapi_extra={"requestBody": _record_body("Comment", edge.max_batch_records)},
    )
    async def post_comments(request: Request) -> OrjsonResponse:
        return await ingest(comments, request)

    @router.post(
        "/votes",
        status_code=202,
        response_model=Accepted,
        responses=errors,
        summary="Ingest a batch of crowd votes",
        openapi_extra={"requestBody": _record_body("Vote", edge.max_batch_records)},
    )
    async def post_votes(request: Request) -> OrjsonResponse:
        return await ingest(votes, request)

    return router


# -- queries ------------------------------------------------------------------------------------


def _query_router(edge: EdgeSettings, store: Store, access: RouteAccess) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["query"], dependencies=access.dependencies())
    stored = Comments(store)

    @router.get(
        "/comments/{comment_id:path}",
        response_model=CommentDoc,
        responses=error_responses(401, 403, 404),
        summary="One comment by id",
    )
    def get_comment(comment_id: str) -> OrjsonResponse:
        return OrjsonResponse(stored.require(comment_id).to_document())

    @router.get(
        "/comments",
        response_model=CommentPage,
        responses=error_responses(400, 401, 403, 422),
        summary="Search and page through comments",
    )
    def list_comments(
        q: str | None = Query(None, max_length=MAX_QUERY_CHARS, description="full-text query"),
        source: str | None = Query(None, max_length=512, description="only this source"),
        limit: int = Query(edge.default_page_size, ge=1, le=edge.max_page_size),
        cursor: str | None = Query(None, max_length=4096, description="next_cursor of a page"),
    ) -> OrjsonResponse:
        # An empty cursor (``?cursor=``) means the first page, as if it were absent.
        page = stored.search(q, source=source, limit=limit, cursor=cursor or None)
        items = [comment.to_document() for comment in page.items]
        return OrjsonResponse(
            {"items": items, "next_cursor": page.next_cursor, "total": page.total}
        )

    @router.get(
        "/stats",
        response_model=Stats,
        responses=error_responses(401, 403),
        summary="Document counts per collection",
    )
    def stats() -> OrjsonResponse:
        return OrjsonResponse({"counts": store.stats()})

    return router


# -- the app ------------------------------------------------------------------------------------


def _broker_ready(kafka: KafkaSettings) -> bool:
    try:
        wait_for_broker(kafka, timeout_s=1.0)
    except MlcycleError:
        return False
    return True


def _install_record_schemas(app: FastAPI) -> None:
    """Publish Comment and Vote under components/schemas, where the request bodies point."""

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # FastAPI's own, which caches it on the app
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            # The ingest bodies point at "Vote": the crowd vote is the only one taken here.
            for name, model in (("Comment", Comment), ("Vote", CrowdVote)):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[name] = model_schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings, *, store: Store, producer: Producer, keys: KeyRing | None = None
) -> FastAPI:
    """The collector's ASGI app, using the given store and producer (the caller owns both).

    ``keys`` defaults to the ones the settings configure.
    """
    access = RouteAccess(
        keys if keys is not None else key_ring(settings.edge), route_scopes(SERVICE)
    )
    app = FastAPI(
        title="mlcycle collector",
        version=__version__,
        description=(
            "Ingest comments and crowd votes into Kafka (all or nothing per batch), "
            "and read comments back from the store. Errors are "
            '`{"error": {"code", "message", "details"}}`.'
        ),
    )
    install_edge(app, service=SERVICE, max_body_bytes=settings.edge.max_body_bytes)

    def ready_check() -> dict[str, bool]:
        return {"store": store.ping(), "broker": _broker_ready(settings.kafka)}

    add_health_routes(app, ready_check)
    app.include_router(_ingest_router(settings.edge, settings.kafka.topics, producer, access))
    app.include_router(_query_router(settings.edge, store, access))
    _install_record_schemas(app)
    return access.verify(app)


def serve(settings: Settings) -> None:
    """Run the API on ``settings.host:settings.collector.port`` until SIGINT/SIGTERM."""
    keys = exposed_key_ring(settings.edge, settings.host, service=SERVICE)
    ensure_topics(settings.kafka)
    store = open_store(settings.store)
    producer = RecordProducer(settings.kafka, client_id="collector-api")
    try:
        app = create_app(settings, store=store, producer=producer, keys=keys)
        serve_app(app, settings.host, settings.collector.port, service=SERVICE)
    finally:
        producer.close()
        store.close()
