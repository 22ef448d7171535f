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
from elasticsearch import Elasticsearch

from mlcycle.common.errors import InvalidInput, StoreError
from mlcycle.common.store.base import Document

logger = logging.getLogger(__name__)

# What Elasticsearch answers for an update of a document that is not there: skipped.
MISSING = 404
# A concurrent write bumped the version between the update's read and write: retried on the shard.
RETRY_ON_CONFLICT = 5


def partial_updates(changes: Mapping[str, Mapping[str, Any]]) -> list[bytes]:
    """One ``update`` action and its partial document per id, as NDJSON."""
    lines = []
    for doc_id, fields in changes.items():
        try:
            doc = orjson.dumps({"doc": fields})
        except orjson.JSONEncodeError as exc:
            raise InvalidInput(f"update is not JSON-serializable: {exc}") from exc
        action = {"update": {"_id": doc_id, "retry_on_conflict": RETRY_ON_CONFLICT}}
        lines.append(orjson.dumps(action) + b"\n" + doc + b"\n")
    return lines


def bulk_update(client: Elasticsearch, index: str, chunk: list[bytes]) -> int:
    """Send one chunk of update actions; how many applied (missing documents are skipped)."""
    response = client.bulk(
        index=index, operations=b"".join(chunk), filter_path="items.*.status,items.*.error"
    )
    return count_updated(index, response.get("items", []))


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
