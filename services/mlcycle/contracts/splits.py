"""Train/dev/test splits: the source's own when it has one, else a hash of the item id.

A hash of the id (not a random draw) makes an item's split a pure function of
its id: the same in every run, on every machine, whatever order the items
arrive in, and stable when the dataset grows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

SPLITS = ("train", "dev", "test")
# Spellings sources use for the three splits.
_SOURCE_SPLITS = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "val": "dev",
    "valid": "dev",
    "validation": "dev",
    "test": "test",
}


def hash_split(item_id: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """The split ``item_id`` falls in, from a uniform number drawn from its SHA-256."""
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    uniform = int.from_bytes(digest[:8], "big") / 2**64
    if uniform < fractions[0]:
        return "train"
    if uniform < fractions[0] + fractions[1]:
        return "dev"
    return "test"


def source_split(metadata: Mapping[str, Any] | None) -> str | None:
    """The split a source recorded in a comment's metadata (wikidetox, LeWiDi), if any."""
    value = (metadata or {}).get("split")
    return _SOURCE_SPLITS.get(value.strip().lower()) if isinstance(value, str) else None


def split_of(
    item_id: str,
    metadata: Mapping[str, Any] | None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> str:
    """The source's split when it has one, else the hash split."""
    return source_split(metadata) or hash_split(item_id, fractions)
