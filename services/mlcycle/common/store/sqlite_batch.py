"""The SQLite store's one write path: documents and their full-text index, kept in step.

:meth:`~mlcycle.common.store.sqlite.SqliteStore.upsert` (and ``upsert_each``,
``update_fields``) hand their encoded documents here, inside the write
transaction; see :mod:`mlcycle.common.store.sqlite` for why it is done in Python.
"""

from __future__ import annotations

import sqlite3

import orjson


def write_batch(
    conn: sqlite3.Connection, table: str, encoded: dict[str, tuple[str, str | None]]
) -> None:
    """Write ``{id: (json, text)}`` and keep the FTS index in step; runs under the write lock."""
    fts = f"{table}_fts"
    lookup = (
        f'SELECT id, rowid, doc, text FROM "{table}" WHERE id IN (SELECT value FROM json_each(?))'
    )
    existing = {
        row[0]: row[1:] for row in conn.execute(lookup, (orjson.dumps(list(encoded)).decode(),))
    }
    # Safe to hand out rowids: BEGIN IMMEDIATE holds the only write lock.
    next_rowid = (conn.execute(f'SELECT max(rowid) FROM "{table}"').fetchone()[0] or 0) + 1
    inserts, updates, unindex, index = [], [], [], []
    for doc_id, (doc, text) in encoded.items():
        old = existing.get(doc_id)
        if old is None:
            rowid, next_rowid = next_rowid, next_rowid + 1
            inserts.append((rowid, doc_id, doc))
        else:
            rowid, old_doc, old_text = old
            if old_doc == doc:
                continue
            updates.append((doc, rowid))
            if old_text == text:
                continue
            # External-content FTS: removing a row needs the exact values it was indexed with.
            unindex.append(("delete", rowid, old_text))
        index.append((rowid, text))
    conn.executemany(f'INSERT INTO "{table}"(rowid, id, doc) VALUES (?, ?, ?)', inserts)
    conn.executemany(f'UPDATE "{table}" SET doc = ? WHERE rowid = ?', updates)
    conn.executemany(f'INSERT INTO "{fts}"("{fts}", rowid, text) VALUES (?, ?, ?)', unindex)
    conn.executemany(f'INSERT INTO "{fts}"(rowid, text) VALUES (?, ?)', index)


def delete_batch(conn: sqlite3.Connection, table: str, ids: list[str]) -> int:
    """Remove the rows with ``ids`` and their FTS entries; returns how many were stored."""
    fts = f"{table}_fts"
    lookup = f'SELECT rowid, text FROM "{table}" WHERE id IN (SELECT value FROM json_each(?))'
    found = conn.execute(lookup, (orjson.dumps(ids).decode(),)).fetchall()
    # External-content FTS: removing a row needs the exact values it was indexed with.
    conn.executemany(
        f'INSERT INTO "{fts}"("{fts}", rowid, text) VALUES (?, ?, ?)',
        [("delete", rowid, text) for rowid, text in found],
    )
    conn.executemany(f'DELETE FROM "{table}" WHERE rowid = ?', [(rowid,) for rowid, _ in found])
    return len(found)
