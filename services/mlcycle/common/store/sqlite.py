"""The embedded store: one SQLite file, one table per collection, FTS5 for full-text search.

Layout per collection ``c``: a table ``c(id TEXT PRIMARY KEY, doc TEXT)`` holding
the JSON document, a virtual ``text`` column computed from ``doc`` (the ``text``
field when it is a string), and an external-content FTS5 index ``c_fts`` over
that column. The text lives once, inside the document.

:meth:`SqliteStore.upsert` is the only writer and maintains the index itself,
inside the same transaction: it looks the batch's ids up first, then inserts new
rows, rewrites changed ones, and for a changed text removes the old words from
the index before adding the new ones. Doing this in Python rather than with
triggers halves the cost of a batch (per-row trigger programs dominate), and an
identical redelivered document costs a lookup and nothing else.

Durability: WAL journal with ``synchronous=FULL`` fsyncs the log on every commit,
so a batch is on disk when ``upsert`` returns (``NORMAL`` would only guarantee
consistency, not that the last commits survive a power loss). Several processes
may share the file (the indexer writes while the API reads): writers take the
lock up front with ``BEGIN IMMEDIATE`` and wait on a busy timeout instead of
failing; readers never block in WAL mode.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from mlcycle.common.errors import InvalidInput, StoreError
from mlcycle.common.store.base import (
    COLLECTIONS,
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
from mlcycle.common.store.sqlite_batch import delete_batch, write_batch
from mlcycle.common.store.sqlite_queries import (
    after_params,
    after_sort_position,
    filter_sql,
    match_expression,
)

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
MAX_IDLE_CONNECTIONS = 8
# Accent- and case-insensitive words, like the Elasticsearch backend's analyzer.
TOKENIZER = "unicode61 remove_diacritics 2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS "{c}" (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    text TEXT GENERATED ALWAYS AS (
        CASE json_type(doc, '$.text') WHEN 'text' THEN json_extract(doc, '$.text') END
    ) VIRTUAL
);
CREATE VIRTUAL TABLE IF NOT EXISTS "{c}_fts" USING fts5(
    text, content='{c}', content_rowid='rowid', tokenize='{tokenizer}'
);
-- Index pages that fill a database page instead of the 1000-byte default.
INSERT INTO "{c}_fts"("{c}_fts", rank) VALUES ('pgsz', 4050);
"""
# Fields filtered on one value among very many, where a scan of the table would be the
# cost of every lookup: one item's votes. Low-selectivity fields (task, run, split) stay
# unindexed on purpose: paging by id with such an index would sort each page's matches.
INDEXED_FIELDS: dict[str, tuple[str, ...]] = {"votes": ("item_id",)}
_INDEX = """
CREATE INDEX IF NOT EXISTS "{c}_{f}" ON "{c}"(json_extract(doc, '$.{f}'));
"""


class SqliteStore(Store):
    """The :class:`Store` on a local SQLite file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self._create_schema()

    # -- connections ---------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection for one call (a connection must not serve two threads at once).

        A pool rather than one connection per thread: server thread pools retire
        idle threads, which would leave their connections open forever.
        """
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            with _errors():
                conn = _connect(self.path)
        try:
            yield conn
        finally:
            with self._lock:
                keep = (
                    not self._closed
                    and not conn.in_transaction
                    and len(self._idle) < MAX_IDLE_CONNECTIONS
                )
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the write lock from its start."""
        with self._connection() as conn, _errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn, _errors():
            return conn.execute(sql, params).fetchall()

    def _create_schema(self) -> None:
        script = "".join(_SCHEMA.format(c=name, tokenizer=TOKENIZER) for name in COLLECTIONS)
        script += "".join(
            _INDEX.format(c=name, f=field)
            for name, fields in INDEXED_FIELDS.items()
            for field in fields
        )
        with self._connection() as conn, _errors():
            # Persistent in the file; every later connection inherits it.
            conn.execute("PRAGMA journal_mode=WAL")
            try:
                # Inside the script: executescript() would commit a transaction opened outside.
                conn.executescript(f"BEGIN IMMEDIATE;{script}COMMIT;")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # -- Store ---------------------------------------------------------------------

    def upsert(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> int:
        """Insert or replace ``docs`` by id, index included, in one durable transaction."""
        table = check_collection(collection)
        unique = unique_by_id(docs)
        check_ids(unique)
        encoded = {doc_id: (_dumps(doc), _indexed_text(doc)) for doc_id, doc in unique.items()}
        self._write_encoded(table, encoded)
        return len(encoded)

    def update_fields(self, collection: str, changes: Mapping[str, Mapping[str, Any]]) -> int:
        """Merge the fields into the stored documents inside one write transaction."""
        table = check_collection(collection)
        checked = check_field_changes(changes)
        if not checked:
            return 0
        lookup = f'SELECT id, doc FROM "{table}" WHERE id IN (SELECT value FROM json_each(?))'
        with self._write() as conn:
            merged: dict[str, tuple[str, str | None]] = {}
            for doc_id, doc in conn.execute(lookup, (_dumps(list(checked)),)).fetchall():
                updated = {**orjson.loads(doc), **checked[doc_id]}
                merged[doc_id] = (_dumps(updated), _indexed_text(updated))
            write_batch(conn, table, merged)
        return len(merged)

    def upsert_each(self, collection: str, docs: Sequence[Mapping[str, Any]]) -> Refusals:
        """Write the documents SQLite can hold in one transaction; refuse the others by id."""
        table = check_collection(collection)
        storable, refused = split_long_ids(unique_by_id(docs))
        encoded: dict[str, tuple[str, str | None]] = {}
        for doc_id, doc in storable.items():
            try:
                encoded[doc_id] = (_dumps(doc), _indexed_text(doc))
            except InvalidInput as exc:
                refused[doc_id] = exc.message
        self._write_encoded(table, encoded)
        return refused

    def _write_encoded(self, table: str, encoded: dict[str, tuple[str, str | None]]) -> None:
        if encoded:
            with self._write() as conn:
                write_batch(conn, table, encoded)

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Remove the documents and their full-text entries in one write transaction."""
        table = check_collection(collection)
        if not ids:
            return 0
        with self._write() as conn:
            return delete_batch(conn, table, list(dict.fromkeys(ids)))

    def get(self, collection: str, doc_id: str) -> Document | None:
        """The document with ``doc_id``, or None."""
        table = check_collection(collection)
        rows = self._read(f'SELECT doc FROM "{table}" WHERE id = ?', (doc_id,))
        return orjson.loads(rows[0][0]) if rows else None

    def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, Document]:
        """The documents among ``ids`` that exist, keyed by id."""
        table = check_collection(collection)
        if not ids:
            return {}
        # One JSON array parameter instead of N placeholders: no variable-count limit.
        sql = f'SELECT id, doc FROM "{table}" WHERE id IN (SELECT value FROM json_each(?))'
        rows = self._read(sql, (_dumps(list(ids)),))
        return {doc_id: orjson.loads(doc) for doc_id, doc in rows}

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
        """Keyset-paginated search: by id (or ``sort`` then id), or by bm25 relevance then id."""
        table = check_collection(collection)
        check_limit(limit)
        where, params = filter_sql(check_filters(filters), column_prefix="c.")
        text = normalize_query(query)
        check_sort(sort, text)
        if sort is not None:
            return self._page_by_field(table, where, params, limit, cursor, sort)
        if text is None:
            return self._page_by_id(table, where, params, limit, cursor)
        match = match_expression(text)
        position = decode_position(cursor, float, str)
        if match is None:
            return Page(items=[])
        return self._page_by_score(table, match, where, params, limit, position)

    def count(self, collection: str, filters: Filters | None = None) -> int:
        """How many documents match ``filters``."""
        table = check_collection(collection)
        where, params = filter_sql(check_filters(filters), column_prefix="c.")
        sql = f'SELECT count(*) FROM "{table}" AS c WHERE {where}'
        return int(self._read(sql, params)[0][0])

    def ping(self) -> bool:
        """True when the file can be read."""
        try:
            self._read("SELECT 1")
        except StoreError:
            return False
        return True

    def close(self) -> None:
        """Close the pooled connections; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- search helpers --------------------------------------------------------------

    def _page_by_id(
        self, table: str, where: str, params: list[Any], limit: int, cursor: str | None
    ) -> Page:
        position = decode_position(cursor, str)
        if position is not None:
            where += " AND c.id > ?"
            params = [*params, position[0]]
        sql = f'SELECT c.id, c.doc FROM "{table}" AS c WHERE {where} ORDER BY c.id LIMIT ?'
        rows = self._read(sql, [*params, limit + 1])
        return _page(rows, limit, lambda row: [row[0]])

    def _page_by_field(
        self,
        table: str,
        where: str,
        params: list[Any],
        limit: int,
        cursor: str | None,
        sort: SortBy,
    ) -> Page:
        # check_sort allowed only identifiers, so the path is safe to inline.
        value = f"json_extract(c.doc, '$.{sort.field}')"
        direction, after_id = ("DESC", "<") if sort.descending else ("ASC", ">")
        position = decode_position(cursor, object, str)
        if position is not None:
            where += " AND " + after_sort_position(value, position[0], sort.descending, after_id)
            params = [*params, *after_params(position)]
        sql = (
            f'SELECT c.id, c.doc, {value} FROM "{table}" AS c WHERE {where}'
            f" ORDER BY {value} {direction}, c.id {direction} LIMIT ?"
        )
        rows = self._read(sql, [*params, limit + 1])
        return _page(rows, limit, lambda row: [row[2], row[0]])

    def _page_by_score(
        self,
        table: str,
        match: str,
        where: str,
        params: list[Any],
        limit: int,
        position: list[Any] | None,
    ) -> Page:
        after, after_params = "1", []
        if position is not None:
            # bm25() is lower-is-better, so "after" means a larger score or a tie and a larger id.
            after = "(score > ? OR (score = ? AND id > ?))"
            after_params = [position[0], position[0], position[1]]
        sql = (
            "SELECT id, doc, score FROM ("
            f'  SELECT c.id AS id, c.doc AS doc, bm25("{table}_fts") AS score'
            f'  FROM "{table}_fts" JOIN "{table}" AS c ON c.rowid = "{table}_fts".rowid'
            f'  WHERE "{table}_fts" MATCH ? AND {where}'
            f") WHERE {after} ORDER BY score, id LIMIT ?"
        )
        rows = self._read(sql, [match, *params, *after_params, limit + 1])
        return _page(rows, limit, lambda row: [row[2], row[0]])


def _indexed_text(doc: Mapping[str, Any]) -> str | None:
    """What the index holds for ``doc``; must equal the table's generated ``text`` column."""
    text = doc.get("text")
    return text if isinstance(text, str) else None


def _page(rows: list[tuple[Any, ...]], limit: int, position: Any) -> Page:
    """A page from ``limit + 1`` fetched rows: the extra row only says there is more."""
    items = [orjson.loads(row[1]) for row in rows[:limit]]
    next_cursor = encode_cursor(position(rows[limit - 1])) if len(rows) > limit else None
    return Page(items=items, next_cursor=next_cursor)


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-16000")  # KiB, per pooled connection
    return conn


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise InvalidInput(f"document is not JSON-serializable: {exc}") from exc


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """SQLite failures (locked past the timeout, disk full, corrupt file) as StoreError."""
    try:
        yield
    except sqlite3.Error as exc:
        logger.warning("sqlite store error: %s", exc)
        raise StoreError(f"sqlite store error: {exc}") from exc
