"""The store interface: idempotent upserts by id, lookups, full-text search with cursors.

Every backend (SQLite embedded, Elasticsearch in production) passes the same
contract tests in ``tests/integration/test_store_contract.py``. Documents are
JSON objects with a string ``id``; writing a document whose id exists
replaces it, so a redelivered message never creates a duplicate.
"""

from __future__ import annotations

import abc
import base64
import re
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
# The documents a store refused, by id, with the store's reason for each.
Refusals = dict[str, str]
Filters = Mapping[str, str | int | float | bool | None]

# Bounds every backend enforces, so a request is rejected the same way everywhere.
MAX_LIMIT = 5000
MAX_QUERY_CHARS = 1000
# Elasticsearch refuses longer document ids; every backend holds ids to the same bound.
MAX_ID_BYTES = 512
FILTER_VALUE_TYPES = (str, int, float, bool, type(None))
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SortBy:
    """Order a listing by one top-level field, then by id in the same direction.

    Documents missing the field (or holding null) come first ascending and last
    descending, as if null were the smallest value.
    """

    field: str
    descending: bool = False


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
        raise _bad_cursor(cursor) from exc
    if not isinstance(value, list) or not value:
        raise _bad_cursor(cursor)
    return value


def _bad_cursor(cursor: str) -> InvalidInput:
    return InvalidInput("cursor is not one this API handed out", details={"cursor": cursor})


def check_collection(name: str) -> str:
    """Reject collection names outside :data:`COLLECTIONS` (they become table and index names)."""
    if name not in COLLECTIONS:
        raise InvalidInput(f"unknown collection {name!r}", details={"known": list(COLLECTIONS)})
    return name


def check_limit(limit: int) -> int:
    """Reject page sizes outside ``1..MAX_LIMIT``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", details={"limit": limit})
    return limit


def check_filters(filters: Filters | None) -> dict[str, Any]:
    """Filters as a dict; field names must be plain top-level identifiers, values scalars."""
    checked: dict[str, Any] = {}
    for name, value in (filters or {}).items():
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise InvalidInput("filter field must be a top-level name", details={"field": name})
        if not isinstance(value, FILTER_VALUE_TYPES):
            raise InvalidInput("filter value must be a scalar or null", details={"field": name})
        if name == TEXT_FIELD and value is not None:
            # Analyzed for search: equality on it means different things per backend.
            raise InvalidInput("search text with a query, not a filter", details={"field": name})
        checked[name] = value
    return checked


def check_sort(sort: SortBy | None, query: str | None) -> None:
    """A sort names one top-level field, and cannot be combined with a relevance query."""
    if sort is None:
        return
    if not isinstance(sort.field, str) or not _FIELD_NAME.match(sort.field):
        raise InvalidInput("sort field must be a top-level name", details={"field": sort.field})
    if sort.field == TEXT_FIELD:
        raise InvalidInput("the analyzed text field cannot be sorted on", details={"field": "text"})
    if query is not None:
        raise InvalidInput("a full-text query is ordered by relevance: drop the sort or the query")


def normalize_query(query: str | None) -> str | None:
    """The full-text query to run, or None when there is none (missing or blank).

    Control characters become spaces; over-long queries are bad input.
    """
    if query is None:
        return None
    if not isinstance(query, str):
        raise InvalidInput("query must be a string")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query is longer than {MAX_QUERY_CHARS} characters")
    cleaned = _CONTROL_CHARS.sub(" ", query).strip()
    return cleaned or None


def decode_position(cursor: str | None, *shape: type) -> list[Any] | None:
    """The sort position in ``cursor``, checked against ``shape`` (one type per value).

    Each backend knows what its positions hold (``str`` for an id, ``float`` for a
    score, which accepts ints, ``int`` for an offset). A cursor of another shape,
    tampered or from the other kind of search, is bad input.
    """
    if cursor is None:
        return None
    position = decode_cursor(cursor)
    if len(position) != len(shape) or not all(map(_is_a, position, shape)):
        raise _bad_cursor(cursor)
    return position


def _is_a(value: Any, kind: type) -> bool:
    if kind is object:  # a sort field's value: any JSON scalar, null included
        return isinstance(value, str | int | float | bool | type(None))
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def unique_by_id(docs: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """``docs`` keyed by id, the last one winning; every doc needs a non-empty string id."""
    unique: dict[str, Mapping[str, Any]] = {}
    for doc in docs:
        doc_id = doc.get("id") if isinstance(doc, Mapping) else None
        if not isinstance(doc_id, str) or not doc_id:
            raise InvalidInput("every document needs a non-empty string id")
        unique[doc_id] = doc
    return unique


def id_too_long(doc_id: str) -> str | None:
    """Why ``doc_id`` cannot be a store id (over :data:`MAX_ID_BYTES` in UTF-8), or None."""
    size = len(doc_id.encode("utf-8", "surrogatepass"))
    if size <= MAX_ID_BYTES:
        return None
    return f"id is {size} bytes in UTF-8, longer than the store's limit of {MAX_ID_BYTES}"


def check_ids(unique: Mapping[str, Any]) -> None:
    """All-or-nothing writes refuse the whole batch when one id is over the limit."""
    for doc_id in unique:
        reason = id_too_long(doc_id)
        if reason is not None:
            raise InvalidInput(reason, details={"id": doc_id[:64] + "..."})


def split_long_ids(
    unique: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, Mapping[str, Any]], Refusals]:
    """The documents whose id a store can hold, and the refusals of the others."""
    storable: dict[str, Mapping[str, Any]] = {}
    refused: Refusals = {}
    for doc_id, doc in unique.items():
        reason = id_too_long(doc_id)
        if reason is None:
            storable[doc_id] = doc
        else:
            refused[doc_id] = reason
    return storable, refused


def check_field_changes(
    changes: Mapping[str, Mapping[str, Any]],
) -> dict[str, Document]:
    """``{id: {field: value}}`` for :meth:`Store.update_fields`: string ids, top-level fields.

    The ``id`` field cannot be changed, and neither can a document's id be empty. An
    id too long to be stored is left out: no such document exists to update.
    """
    checked: dict[str, Document] = {}
    for doc_id, fields in changes.items():
        if not isinstance(doc_id, str) or not doc_id:
            raise InvalidInput("every update needs a non-empty string id")
        if id_too_long(doc_id) is not None:
            continue
        if not isinstance(fields, Mapping) or not fields:
            raise InvalidInput("an update sets at least one field", details={"id": doc_id})
        for name in fields:
            if not isinstance(name, str) or not _FIELD_NAME.match(name) or name == "id":
                raise InvalidInput(
                    "an update sets top-level fields other than id", details={"field": name}
                )
        checked[doc_id] = dict(fields)
    return checked


class Store(abc.ABC):
    """What business code needs from storage. Implementations must be thread-safe."""

    @abc.abstractmethod
    def upsert(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> int:
        """Insert or replace ``docs`` by their ``id``; durable when this returns.

        Within one call the last document with a given id wins. Returns how many
        distinct ids were written.
        """

    @abc.abstractmethod
    def upsert_each(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> Refusals:
        """Like :meth:`upsert`, but document by document: the refused ones are returned.

        A document the store refuses for what it is (an id over :data:`MAX_ID_BYTES`,
        a value that is not JSON, a field whose type conflicts with the collection's
        mapping) is left out and reported as ``{id: the store's reason}``; every
        other document is durable when this returns. A failure of the store itself
        (unreachable, overloaded) raises, as :meth:`upsert` does, and then any
        subset may have been written (a retry rewrites them, idempotently).
        """

    @abc.abstractmethod
    def update_fields(self, collection: str, changes: Mapping[str, Mapping[str, Any]]) -> int:
        """Set the given top-level fields of stored documents, leaving every other field as is.

        ``changes`` maps a document id to the fields to set. Each document is changed
        in place by the backend (no read-modify-write by the caller), so a writer
        that replaced the document meanwhile keeps its fields. Ids that are not
        stored are skipped; returns how many documents were updated. An object
        value should keep one shape: Elasticsearch merges it into the stored one.
        """

    @abc.abstractmethod
    def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Remove the documents with ``ids``; durable when this returns.

        Ids that are not stored are skipped (deleting twice is deleting once), so a
        redelivered retraction changes nothing. Returns how many documents were removed.
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
        sort: SortBy | None = None,
    ) -> Page:
        """Documents matching every ``filters`` equality and, if given, the full-text ``query``.

        Without a query the order is by id, or by ``sort`` then id; with one, by relevance
        then id (a query and a sort together are bad input). Following
        ``next_cursor`` until it is None visits every match exactly once.

        The query is plain words, never syntax: every word must occur in ``text``
        (case- and accent-insensitive). A blank query means no query; one without
        any word (only punctuation or symbols) matches nothing. Filters compare
        top-level fields for equality; a None value matches a missing or null field.
        """

    @abc.abstractmethod
    def count(self, collection: str, filters: Filters | None = None) -> int:
        """How many documents match ``filters``."""

    @abc.abstractmethod
    def ping(self) -> bool:
        """True when the backend answers."""

    # Optional hooks: backends without the concern keep these no-ops.
    def refresh(self) -> None:  # noqa: B027
        """Make everything written so far visible to :meth:`search` (near-real-time backends)."""

    def close(self) -> None:  # noqa: B027
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
