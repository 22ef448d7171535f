"""Generic JSON Lines: one comment or one vote per line, in any mix.

A line is a comment when it has ``id`` and ``text``, a vote when it has
``item_id``, ``annotator_id`` and ``label``; ``{"type": "comment" | "vote", ...}``
says so explicitly. Values keep their JSON types and are validated strictly (an
``id`` written as a number is rejected, not guessed at).

Comment keys beyond the record's own fields (``id``, ``text``, ``source``,
``created_at``, ``metadata``) are folded into ``metadata``, which is what
metadata is for. Votes have no free-form part, so their unknown keys (an
``id`` from a store dump, a ``split`` column) are ignored and named once in the
log. Blank lines are ignored; any other unreadable line is skipped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from mlcycle.contracts.comments import Comment, Vote
from mlcycle.importers.base import FileImporter, ImportedRecord, ImportStats, open_text, validated

logger = logging.getLogger(__name__)

COMMENT_FIELDS = frozenset(Comment.model_fields)
VOTE_FIELDS = frozenset(Vote.model_fields)


def record_kind(fields: Mapping[str, Any], declared: object = None) -> str | None:
    """``"comment"``, ``"vote"`` or None, from an explicit type or the keys present."""
    if declared is not None:
        return declared if declared in ("comment", "vote") else None
    if {"item_id", "annotator_id"} <= fields.keys():
        return "vote"
    if {"id", "text"} <= fields.keys():
        return "comment"
    return None


def comment_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Comment arguments: unknown keys move into ``metadata`` (explicit metadata wins)."""
    known = {k: v for k, v in fields.items() if k in COMMENT_FIELDS}
    extra = {k: v for k, v in fields.items() if k not in COMMENT_FIELDS}
    if extra:
        metadata = known.get("metadata", {})
        known["metadata"] = {**extra, **metadata} if isinstance(metadata, dict) else metadata
    return known


def vote_fields(fields: Mapping[str, Any], ignored: set[str]) -> dict[str, Any]:
    """Vote arguments; the names of unknown keys are added to ``ignored``."""
    ignored.update(k for k in fields if k not in VOTE_FIELDS)
    return {k: v for k, v in fields.items() if k in VOTE_FIELDS}


def build(
    kind: str, fields: Mapping[str, Any], ignored: set[str], stats: ImportStats, where: str
) -> ImportedRecord | None:
    """Validate one comment or vote mapping; a failure is counted in ``stats``."""
    if kind == "comment":
        return validated(Comment, comment_fields(fields), stats, where)
    return validated(Vote, vote_fields(fields, ignored), stats, where)


def log_ignored(path: Path, ignored: set[str]) -> None:
    """Say once per file which vote keys had no place in the record."""
    if ignored:
        logger.info("%s: ignored vote fields %s", path.name, sorted(ignored))


class JsonlImporter(FileImporter):
    """Comments and votes from JSON Lines files."""

    name = "jsonl"
    patterns = ("*.jsonl", "*.jsonl.gz", "*.ndjson", "*.ndjson.gz")

    def read_file(self, path: Path, stats: ImportStats) -> Iterator[ImportedRecord]:
        """Yield one record per non-blank line."""
        ignored: set[str] = set()
        with open_text(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                record = _parse_line(line, ignored, stats, f"{path.name}:{line_no}")
                if record is not None:
                    yield record
        log_ignored(path, ignored)


def _parse_line(
    line: str, ignored: set[str], stats: ImportStats, where: str
) -> ImportedRecord | None:
    try:
        fields = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        stats.skip(where, "not JSON", str(exc)[:120])
        return None
    if not isinstance(fields, dict):
        stats.skip(where, "not a JSON object")
        return None
    declared = fields.pop("type", None)
    kind = record_kind(fields, declared)
    if kind is None:
        detail = f"type={declared!r}" if declared is not None else f"keys={sorted(fields)[:10]}"
        stats.skip(where, "neither a comment nor a vote", detail)
        return None
    return build(kind, fields, ignored, stats, where)
