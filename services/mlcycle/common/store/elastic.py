"""The production store: Elasticsearch through the official client, one index per collection.

Index ``<prefix><collection>`` is created on first use with an explicit mapping:
``id`` a keyword (the tie-breaker of every sort), ``text`` analyzed with the
standard tokenizer, lowercase and ASCII folding (case- and accent-insensitive,
like the SQLite backend). Other top-level fields are mapped dynamically, strings
as keywords (filters are exact equality) and every number as a double (so a
field holding 1 in one document and 0.5 in the next is neither truncated nor
rejected). Nested objects such as the free ``metadata`` are kept in ``_source``
but not indexed: filters are on top-level fields only, and heterogeneous
metadata must never fail a write with a mapping conflict.

Full-text queries use ``match`` with ``operator: and``: every word of the query
must occur, which is what a search box user expects when adding a word narrows
the results, and what the SQLite backend's FTS5 query does. Relevance-ordered
results page by offset, so they reach as far as the index's result window
(10,000 hits); id-ordered listing (and :meth:`Store.scan`) uses ``search_after``
and has no such limit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from elasticsearch import (
    ApiError,
    BadRequestError,
    Elasticsearch,
    NotFoundError,
    TransportError,
)

from mlcycle.common.errors import InvalidInput, StoreError, Unavailable
from mlcycle.common.store.base import (
    COLLECTIONS,
    TEXT_FIELD,
    Document,
    Filters,
    Page,
    Refusals,
    SortBy,
    Store,
    check_collection,
    check_field_changes,
    check_filters,
    check_ids,
    check_limit,
    check_sort,
    decode_position,
    encode_cursor,
    normalize_query,
    split_long_ids,
    unique_by_id,
)
from mlcycle.common.store.elastic_bulk import (
    BULK_FILTER,
    BulkLine,
    bulk_error,
    bulk_errors,
    bulk_line,
    chunks,
    refusals,
)
from mlcycle.common.store.elastic_connection import elastic_client
from mlcycle.common.store.elastic_update import (
    count_deleted,
    count_updated,
    deletions,
    partial_updates,
)

if TYPE_CHECKING:
    from mlcycle.common.settings import StoreSettings

logger = logging.getLogger(__name__)

MGET_CHUNK = 1000
# index.max_result_window's default: from + size may not go past it.
RESULT_WINDOW = 10_000


def _template(json_type: str, **mapping: Any) -> dict[str, Any]:
    return {"match_mapping_type": json_type, "mapping": mapping}


INDEX_SETTINGS: dict[str, Any] = {
    "analysis": {
        "analyzer": {
            "folded": {
                "type": "custom",
                "tokenizer": "standard",
                "filter": ["lowercase", "asciifolding"],
            }
        }
    }
}

INDEX_MAPPINGS: dict[str, Any] = {
    "dynamic": True,
    # Timestamps stay keywords: a later non-date string must not fail the write.
    "date_detection": False,
    "dynamic_templates": [
        {"objects": _template("object", type="object", enabled=False)},
        {"integers": _template("long", type="double")},
        {"decimals": _template("double", type="double")},
        # Long strings stay in _source but are not indexed (keyword terms are capped in size).
        {"strings": _template("string", type="keyword", ignore_above=1024)},
    ],
    "properties": {
        "id": {"type": "keyword"},
        TEXT_FIELD: {"type": "text", "analyzer": "folded"},
    },
}


class ElasticStore(Store):
    """The :class:`Store` on Elasticsearch; thread-safe like the client it wraps."""

    def __init__(self, client: Elasticsearch, index_prefix: str = "mlcycle-") -> None:
        self.client = client
        self.index_prefix = index_prefix
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> ElasticStore:
        """A store on ``settings.es_url`` (comma-separated hosts), with its login and CA."""
        return cls(elastic_client(settings), settings.es_index_prefix)

    def index_name(self, collection: str) -> str:
        """The index holding ``collection``."""
        return f"{self.index_prefix}{check_collection(collection)}"

    # -- Store ---------------------------------------------------------------------

    def upsert(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> int:
        """Index (create or replace) ``docs`` with ``_id`` = id; StoreError on any item error."""
        index = self._index(collection)
        unique = unique_by_id(docs)
        check_ids(unique)
        lines = [bulk_line(doc_id, doc) for doc_id, doc in unique.items()]
        for chunk in chunks(lines):
            response = self._bulk(index, chunk)
            if response.get("errors"):
                raise bulk_error(index, response["items"])
        return len(unique)

    def update_fields(self, collection: str, changes: Mapping[str, Mapping[str, Any]]) -> int:
        """Bulk ``update`` actions with partial documents (merged by Elasticsearch itself)."""
        index = self._index(collection)
        lines = partial_updates(check_field_changes(changes))
        return sum(
            count_updated(index, self._bulk(index, chunk)["items"]) for chunk in chunks(lines)
        )

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Bulk ``delete`` actions; an id that is not stored counts for nothing."""
        index = self._index(collection)
        lines = deletions([doc_id for doc_id in dict.fromkeys(ids) if doc_id])
        return sum(
            count_deleted(index, self._bulk(index, chunk)["items"]) for chunk in chunks(lines)
        )

    def upsert_each(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> Refusals:
        """Index every document Elasticsearch takes; its reason for each one it refuses."""
        index = self._index(collection)
        storable, refused = split_long_ids(unique_by_id(docs))
        lines: list[BulkLine] = []
        for doc_id, doc in storable.items():
            try:
                lines.append(bulk_line(doc_id, doc))
            except InvalidInput as exc:
                refused[doc_id] = exc.message
        for chunk in chunks(lines):
            refused.update(self._write_each(index, chunk))
        return refused

    def _write_each(self, index: str, chunk: list[BulkLine]) -> Refusals:
        try:
            response = self._bulk(index, chunk)
        except StoreError as exc:
            # The whole request was refused: find the culprit by sending each document alone.
            if len(chunk) == 1:
                return {chunk[0][0]: exc.message}
            found: Refusals = {}
            for line in chunk:
                found.update(self._write_each(index, [line]))
            return found
        return refusals(index, response["items"]) if response.get("errors") else {}

    def _bulk(self, index: str, chunk: list[BulkLine]) -> Any:
        with bulk_errors():
            return self.client.bulk(
                index=index, operations=b"".join(line for _, line in chunk), filter_path=BULK_FILTER
            )

    def get(self, collection: str, doc_id: str) -> Document | None:
        """The document with ``doc_id`` (a realtime GET: no refresh needed), or None."""
        index = self._index(collection)
        if not doc_id:  # the client refuses an empty id before asking
            return None
        with _errors("get"):
            try:
                response = self.client.get(index=index, id=doc_id)
            except NotFoundError:
                return None
        return response["_source"]

    def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Document]:
        """The documents among ``ids`` that exist, keyed by id (realtime)."""
        index = self._index(collection)
        unique = [doc_id for doc_id in dict.fromkeys(ids) if doc_id]
        found: dict[str, Document] = {}
        for start in range(0, len(unique), MGET_CHUNK):
            with _errors("mget"):
                response = self.client.mget(index=index, ids=unique[start : start + MGET_CHUNK])
            found.update({d["_id"]: d["_source"] for d in response["docs"] if d.get("found")})
        return found

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
        """By id or ``sort`` then id (``search_after``); with a query by ``_score`` (offsets)."""
        index = self._index(collection)
        check_limit(limit)
        text = normalize_query(query)
        check_sort(sort, text)
        filter_clauses = _filter_clauses(filters)
        if sort is not None:
            return self._page_by_field(index, filter_clauses, limit, cursor, sort)
        if text is None:
            return self._page_by_id(index, filter_clauses, limit, cursor)
        return self._page_by_score(index, text, filter_clauses, limit, cursor)

    def count(self, collection: str, filters: Filters | None = None) -> int:
        """How many documents match ``filters`` (as of the last refresh)."""
        index = self._index(collection)
        query = {"bool": {"filter": _filter_clauses(filters)}}
        with _errors("count"):
            return int(self.client.count(index=index, query=query)["count"])

    def ping(self) -> bool:
        """True when the cluster answers."""
        try:
            return bool(self.client.ping())
        except (TransportError, ApiError):
            return False

    def refresh(self) -> None:
        """Make every write so far visible to search and count."""
        names = ",".join(self.index_name(c) for c in COLLECTIONS)
        with _errors("refresh"):
            self.client.indices.refresh(index=names, ignore_unavailable=True)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    # -- search helpers --------------------------------------------------------------

    def _page_by_id(
        self, index: str, filter_clauses: list[dict[str, Any]], limit: int, cursor: str | None
    ) -> Page:
        position = decode_position(cursor, str)
        hits = self._hits(
            index,
            query={"bool": {"filter": filter_clauses}},
            sort=[{"id": "asc"}],
            size=limit + 1,
            search_after=position,
        )
        next_cursor = encode_cursor(hits[limit - 1]["sort"]) if len(hits) > limit else None
        return Page(items=[hit["_source"] for hit in hits[:limit]], next_cursor=next_cursor)

    def _page_by_field(
        self,
        index: str,
        filter_clauses: list[dict[str, Any]],
        limit: int,
        cursor: str | None,
        sort: SortBy,
    ) -> Page:
        order = "desc" if sort.descending else "asc"
        # Null is the smallest value, as in the SQLite backend: first ascending, last descending.
        missing = "_last" if sort.descending else "_first"
        position = decode_position(cursor, object, str)
        hits = self._hits(
            index,
            query={"bool": {"filter": filter_clauses}},
            sort=[
                {sort.field: {"order": order, "missing": missing, "unmapped_type": "keyword"}},
                {"id": order},
            ],
            size=limit + 1,
            search_after=position,
        )
        next_cursor = encode_cursor(hits[limit - 1]["sort"]) if len(hits) > limit else None
        return Page(items=[hit["_source"] for hit in hits[:limit]], next_cursor=next_cursor)

    def _page_by_score(
        self,
        index: str,
        text: str,
        filter_clauses: list[dict[str, Any]],
        limit: int,
        cursor: str | None,
    ) -> Page:
        # Offsets, not search_after: a search_after position holds the score as the server
        # rendered it, and servers that rank with more precision than they print would
        # repeat or skip hits at every page boundary. Offsets are exact, within the window.
        position = decode_position(cursor, int)
        offset = position[0] if position else 0
        if not 0 <= offset < RESULT_WINDOW:
            raise InvalidInput("cursor is not one this API handed out", details={"cursor": cursor})
        size = min(limit + 1, RESULT_WINDOW - offset)
        hits = self._hits(
            index,
            query={
                "bool": {
                    "must": [{"match": {TEXT_FIELD: {"query": text, "operator": "and"}}}],
                    "filter": filter_clauses,
                }
            },
            sort=[{"_score": "desc"}, {"id": "asc"}],
            size=size,
            from_=offset,
        )
        if len(hits) == size <= limit:
            logger.info("relevance paging stops at the %d-hit result window", RESULT_WINDOW)
        next_cursor = encode_cursor([offset + limit]) if len(hits) > limit else None
        return Page(items=[hit["_source"] for hit in hits[:limit]], next_cursor=next_cursor)

    def _hits(self, index: str, **body: Any) -> list[dict[str, Any]]:
        with _errors("search"):
            response = self.client.search(index=index, track_total_hits=False, **body)
        return response["hits"]["hits"]

    # -- indices -------------------------------------------------------------------

    def _index(self, collection: str) -> str:
        """The collection's index, created with the mapping the first time it is used."""
        name = self.index_name(collection)
        if name in self._ready:
            return name
        with self._lock:
            if name not in self._ready:
                self._create_index(name)
                self._ready.add(name)
        return name

    def _create_index(self, name: str) -> None:
        with _errors("create index"):
            try:
                self.client.indices.create(
                    index=name, settings=INDEX_SETTINGS, mappings=INDEX_MAPPINGS
                )
            except BadRequestError as exc:
                # Another process (or an earlier run) created it first: that is the goal.
                if exc.message != "resource_already_exists_exception":
                    raise
                return
        logger.info("created index %s", name)


def _filter_clauses(filters: Filters | None) -> list[dict[str, Any]]:
    """``term`` per equality filter; None means the field is missing or null."""
    clauses: list[dict[str, Any]] = []
    for name, value in check_filters(filters).items():
        if value is None:
            clauses.append({"bool": {"must_not": [{"exists": {"field": name}}]}})
        else:
            clauses.append({"term": {name: value}})
    return clauses


@contextlib.contextmanager
def _errors(action: str) -> Iterator[None]:
    """Client failures as mlcycle errors: unreachable is Unavailable, a refusal StoreError."""
    try:
        yield
    except ApiError as exc:
        raise StoreError(f"elasticsearch {action} failed: {exc}") from exc
    except TransportError as exc:
        raise Unavailable(f"elasticsearch is unreachable ({action}): {exc}") from exc
