"""Record ids: bounded in UTF-8 bytes, and composite ids that always fit the store.

Elasticsearch refuses a document id over 512 bytes (UTF-8), whatever its
length in characters, so every id that becomes a store key or a Kafka key is
checked in bytes at the edges (the REST APIs answer 422, the indexer
dead-letters the record).

A composite id (a vote's ``<task>:<item>:<annotator>``, a label's
``<run>:<item>``) joins ids that may each be that long. It stays the readable
join whenever that fits, which is what every stored id so far is, and becomes
``<kind>-<sha256 of the join>`` when it would not. The hashed form is
deterministic (a redelivered record overwrites itself) and holds no ``:``,
which every joined form holds, so the two can never name the same record.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import AfterValidator, Field, StrictStr

from mlcycle.common.store.base import MAX_ID_BYTES

__all__ = ["MAX_ID_BYTES", "RecordId", "joined_id", "within_id_bytes"]


def within_id_bytes(value: str) -> str:
    """``value`` if its UTF-8 encoding fits a store id, else ``ValueError`` saying so."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_ID_BYTES:
        raise ValueError(f"an id is at most {MAX_ID_BYTES} bytes in UTF-8, this one is {size}")
    return value


# Ids become Kafka keys and store keys: non-empty, at most 512 UTF-8 bytes, no control characters.
RecordId = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=MAX_ID_BYTES,
        pattern=r"^[^\x00-\x1f]+$",
        description=f"at most {MAX_ID_BYTES} bytes in UTF-8, no control characters",
    ),
    AfterValidator(within_id_bytes),
]


def joined_id(kind: str, *parts: str) -> str:
    """``parts`` joined by ``:``, or ``<kind>-<sha256 hex>`` of that join when it is too long."""
    joined = ":".join(parts)
    encoded = joined.encode("utf-8", "surrogatepass")
    if len(encoded) <= MAX_ID_BYTES:
        return joined
    return f"{kind}-{hashlib.sha256(encoded).hexdigest()}"
