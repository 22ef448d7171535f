"""Partial updates on Elasticsearch: bulk ``update`` actions and what became of each.

Elasticsearch applies a partial document on the shard, under the document's
version, so a field set here never reverts a replacement written meanwhile by
another writer (an upsert of the whole document keeps the newer fields, and the
update adds its own on top).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from mlcycle.common.errors import InvalidInput, StoreError
from mlcycle.common.store.base import Document
from mlcycle.common.store.elastic_bulk import BulkLine

logger = logging.getLogger(__name__)

# What Elasticsearch answers for an update of a document that is not there: skipped.
MISSING = 404
# A concurrent write bumped the version between the update's read and write: retried on the shard.
RETRY_ON_CONFLICT = 5


def partial_updates(changes: Mapping[str, Mapping[str, Any]]) -> list[BulkLine]:
    """One ``update`` action and its partial document per id, as NDJSON."""
    lines = []
    for doc_id, fields in changes.items():
        try:
            doc = orjson.dumps({"doc": fields})
        except orjson.JSONEncodeError as exc:
            raise InvalidInput(f"update is not JSON-serializable: {exc}") from exc
        action = {"update": {"_id": doc_id, "retry_on_conflict": RETRY_ON_CONFLICT}}
        lines.append((doc_id, orjson.dumps(action) + b"\n" + doc + b"\n"))
    return lines


def count_updated(index: str, items: list[Document]) -> int:
    """How many updates applied; a missing document is skipped, any other error raises."""
    updated = 0
    failed = []
    for item in items:
        for result in item.values():
            status = result.get("status")
            if "error" not in result:
                updated += 1
            elif status != MISSING:
                failed.append({"status": status, "error": result["error"]})
    if failed:
        logger.warning("bulk update of %s: %d documents failed", index, len(failed))
        raise StoreError(
            f"{len(failed)} documents of {index} were not updated",
            details={"failed": len(failed), "first": failed[:5]},
        )
    return updated


def deletions(ids: list[str]) -> list[BulkLine]:
    """One ``delete`` action per id, as NDJSON."""
    return [(doc_id, orjson.dumps({"delete": {"_id": doc_id}}) + b"\n") for doc_id in ids]


def count_deleted(index: str, items: list[Document]) -> int:
    """How many deletes removed a document; a missing one is skipped, any error raises."""
    deleted = 0
    failed = []
    for item in items:
        for result in item.values():
            if "error" in result:
                failed.append({"status": result.get("status"), "error": result["error"]})
            elif result.get("status") != MISSING:
                deleted += 1
    if failed:
        raise StoreError(
            f"{len(failed)} documents of {index} were not deleted",
            details={"failed": len(failed), "first": failed[:5]},
        )
    return deleted
