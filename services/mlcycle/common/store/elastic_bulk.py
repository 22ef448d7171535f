"""Bulk writes to Elasticsearch: bounded NDJSON bodies, and what each item's result means.

A bulk response reports every document on its own. A 4xx on an item (a
mapping conflict, a malformed value) is a refusal of that document: retrying
it can never succeed, so it is reported by id with Elasticsearch's reason. A
429 or 5xx (a full write queue, a shard not yet allocated) says "later": the
write is retried whole, which rewrites the others idempotently.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import orjson
from elasticsearch import ApiError, TransportError

from mlcycle.common.errors import InvalidInput, StoreError, Unavailable
from mlcycle.common.store.base import Refusals

logger = logging.getLogger(__name__)

# A bulk request stays well under Elasticsearch's default 100 MB http.max_content_length.
BULK_MAX_DOCS = 2000
BULK_MAX_BYTES = 10 * 1024 * 1024
# Filtered responses: per item only what tells success from failure.
BULK_FILTER = "errors,items.*._id,items.*.status,items.*.error"

# One document's bulk action and source, with its id.
BulkLine = tuple[str, bytes]
# The ``items`` of a bulk response: one ``{action: result}`` per document, in order.
BulkItems = Sequence[Mapping[str, Any]]


class FailedItem(NamedTuple):
    """One document a bulk request did not write: its id, the item's status and error."""

    id: str
    status: int
    error: object


def bulk_line(doc_id: str, doc: Mapping[str, Any]) -> BulkLine:
    """One ``index`` action (create or replace) and its source, as NDJSON."""
    try:
        source = orjson.dumps(doc)
    except orjson.JSONEncodeError as exc:
        raise InvalidInput(f"document is not JSON-serializable: {exc}") from exc
    return doc_id, orjson.dumps({"index": {"_id": doc_id}}) + b"\n" + source + b"\n"


def chunks(lines: list[BulkLine]) -> Iterator[list[BulkLine]]:
    """Bulk bodies of at most BULK_MAX_DOCS documents and (unless one is bigger) BULK_MAX_BYTES."""
    chunk: list[BulkLine] = []
    size = 0
    for line in lines:
        if chunk and (len(chunk) >= BULK_MAX_DOCS or size + len(line[1]) > BULK_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += len(line[1])
    if chunk:
        yield chunk


def is_transient(status: int) -> bool:
    """Whether an HTTP status says "try again later" rather than "this is wrong"."""
    return status in (408, 429) or status >= 500


@contextlib.contextmanager
def bulk_errors() -> Iterator[None]:
    """A failed bulk request: Unavailable when it may succeed later, StoreError when refused."""
    try:
        yield
    except ApiError as exc:
        if is_transient(exc.meta.status):
            raise Unavailable(f"elasticsearch cannot take writes now: {exc}") from exc
        raise StoreError(f"elasticsearch refused the bulk request: {exc}") from exc
    except TransportError as exc:
        raise Unavailable(f"elasticsearch is unreachable (bulk): {exc}") from exc


def failed_items(items: BulkItems) -> list[FailedItem]:
    """Every item of a bulk response that failed."""
    return [
        FailedItem(str(result.get("_id")), int(result.get("status", 0)), result["error"])
        for item in items
        for result in item.values()
        if "error" in result
    ]


def refusals(index: str, items: BulkItems) -> Refusals:
    """``{id: reason}`` of the refused items; Unavailable when any failed only for now."""
    failed = failed_items(items)
    transient = [f for f in failed if is_transient(f.status)]
    if transient:
        raise Unavailable(
            f"elasticsearch could not write {len(transient)} documents to {index} for now: "
            f"{describe(transient[0].error)}"
        )
    if failed:
        logger.warning("bulk write to %s: %d documents refused", index, len(failed))
    return {f.id: describe(f.error) for f in failed}


def bulk_error(index: str, items: BulkItems) -> StoreError:
    """The error of an all-or-nothing write that had failed items."""
    failed = failed_items(items)
    logger.warning("bulk write to %s: %d documents failed", index, len(failed))
    return StoreError(
        f"{len(failed)} documents were not written to {index}",
        details={"failed": len(failed), "first": [f._asdict() for f in failed[:5]]},
    )


def describe(error: object) -> str:
    """Elasticsearch's ``{"type", "reason", "caused_by"}`` as one line."""
    if not isinstance(error, Mapping):
        return str(error)
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}".rstrip(": ")
    cause = error.get("caused_by")
    return f"{text} (caused by {describe(cause)})" if isinstance(cause, Mapping) else text
