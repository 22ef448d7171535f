"""The store interface: idempotent upserts by id, lookups, full-text search with cursors.

Every backend (SQLite embedded, Elasticsearch in production) passes the same
contract tests in ``tests/integration/test_store_contract.py``. Documents are
JSON objects with a string ``id``; writing a document whose id exists
replaces it, so a redelivered message never creates a duplicate.
"""

from __future__ import annotations

import abc
import base64
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from mlcycle.common.errors import InvalidInput

# Collections every backend knows about. Each service owns the ones it writes.
COMMENTS = "comments"
VOTES = "votes"
LABELS = "labels"
RUNS = "runs"
MODELS = "models"
COLLECTIONS: tuple[str, ...] = (COMMENTS, VOTES, LABELS, RUNS, MODELS)

# The field full-text search looks into, where a collection's documents have it.
TEXT_FIELD = "text"

Document = dict[str, Any]
Filters = Mapping[str, str | int | float | bool | None]


@dataclass(frozen=True)
class Page:
    """One page of results; pass ``next_cursor`` back to get the next one (None at the end)."""

    items: list[Document]
    next_cursor: str | None = None
    total: int | None = field(default=None)


def encode_cursor(position: Sequence[Any]) -> str:
    """An opaque, URL-safe cursor for a sort position."""
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """Inverse of :func:`encode_cursor`; a tampered cursor is bad input, not a crash."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidInput("cursor is not one this API handed out", details={"cursor": cursor}) from exc
    if not isinstance(value, list) or not value:
        raise InvalidInput("cursor is not one this API handed out", details={"cursor": cursor})
    return value


def check_collection(name: str) -> str:
    """Reject collection names outside :data:`COLLECTIONS` (they become table and index names)."""
    if name not in COLLECTIONS:
        raise InvalidInput(f"unknown collection {name!r}", details={"known": list(COLLECTIONS)})
    return name


class Store(abc.ABC):
    """What business code needs from storage. Implementations must be thread-safe."""

    @abc.abstractmethod
    def upsert(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> int:
        """Insert or replace ``docs`` by their ``id``; durable when this returns. Returns the count.

        Within one call the last document with a given id wins.
        """

    @abc.abstractmethod
    def get(self, collection: str, doc_id: str) -> Document | None:
        """The document with ``doc_id``, or None."""

    @abc.abstractmethod
    def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Document]:
        """The documents among ``ids`` that exist, keyed by id."""

    @abc.abstractmethod
    def search(
        self,
        collection: str,
        *,
        query: str | None = None,
        filters: Filters | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Documents matching every ``filters`` equality and, if given, the full-text ``query``.

        Without a query the order is by id; with one, by relevance then id. Following
        ``next_cursor`` until it is None visits every match exactly once.
        """

    @abc.abstractmethod
    def count(self, collection: str, filters: Filters | None = None) -> int:
        """How many documents match ``filters``."""

    @abc.abstractmethod
    def ping(self) -> bool:
        """True when the backend answers."""

    def refresh(self) -> None:
        """Make everything written so far visible to :meth:`search` (near-real-time backends)."""

    def close(self) -> None:
        """Release connections."""

    def stats(self) -> dict[str, int]:
        """Document counts per collection."""
        return {name: self.count(name) for name in COLLECTIONS}

    def scan(
        self, collection: str, filters: Filters | None = None, batch_size: int = 1000
    ) -> Iterator[Document]:
        """Every matching document, in id order, a page at a time (constant memory)."""
        cursor: str | None = None
        while True:
            page = self.search(collection, filters=filters, limit=batch_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
