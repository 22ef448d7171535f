"""Generic tables with a header row: a comments table or a votes table.

The header decides what a file holds:

- ``id`` and ``text`` (optionally ``source``, ``created_at``): comments; a
  table with ``item_id`` and ``text`` but no ``annotator_id`` (an items table
  exported next to a votes table) is read the same way, ``item_id`` being the
  comment's id. Every
  other column goes into ``metadata``, with numbers and booleans written as
  text turned back into numbers and booleans (``"3"`` -> 3, ``"0.5"`` -> 0.5,
  ``"true"`` -> True); values such as ``"007"`` stay text, since a leading zero
  says it is a code, not a quantity. Empty cells are left out.
- ``item_id``, ``annotator_id`` and ``label`` (optionally ``task``, ``score``,
  ``synthetic_annotator``, ``source``, ``created_at``): votes. ``label`` and
  ``score`` must be numbers; other columns are ignored and named once in the log.

Files ending in ``.tsv`` (or ``.tsv.gz``) are read tab-separated, anything
else comma-separated with standard quoting, so text cells may hold commas,
quotes and newlines.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlcycle.common.errors import InvalidInput
from mlcycle.importers.base import FileImporter, ImportedRecord, ImportStats, open_text
from mlcycle.importers.jsonl import build, log_ignored

_INT = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$")
COMMENT_COLUMNS = frozenset({"id", "text"})
VOTE_COLUMNS = frozenset({"item_id", "annotator_id", "label"})
# Columns that are record fields (never metadata) and stay text.
_TEXT_FIELDS = frozenset({"id", "text", "source", "item_id", "annotator_id", "task"})


def convert_scalar(raw: str) -> Any:
    """A cell's natural value: int, float, bool, or the text itself; None when empty."""
    value = raw.strip()
    if not value:
        return None
    digits = value.lstrip("-")
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return raw  # a code such as a zip or an account number
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        number = float(value)
        return number if number not in (float("inf"), float("-inf")) else raw
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return raw


def row_fields(kind: str, header: list[str], row: list[str]) -> dict[str, Any]:
    """The record's arguments from one row; empty cells are omitted."""
    fields: dict[str, Any] = {}
    for name, raw in zip(header, row, strict=True):
        if name in _TEXT_FIELDS:
            if raw != "" or name == "text":
                fields[name] = raw
        elif name == "created_at":
            if raw.strip():
                fields[name] = raw.strip()
        else:
            value = convert_scalar(raw)
            if value is not None:
                fields[name] = value
    return fields


def table_kind(path: Path, header: list[str]) -> str:
    """``"comment"`` or ``"vote"`` from the header; :class:`InvalidInput` otherwise."""
    columns = set(header)
    if COMMENT_COLUMNS <= columns or _items_table(columns):
        return "comment"
    if VOTE_COLUMNS <= columns:
        return "vote"
    raise InvalidInput(
        f"{path}: a table needs the columns id,text (comments) or "
        "item_id,annotator_id,label (votes)",
        details={"header": header[:20]},
    )


def _items_table(columns: set[str]) -> bool:
    return {"item_id", "text"} <= columns and not columns & {"id", "annotator_id"}


class CsvImporter(FileImporter):
    """Comments or votes from delimited text tables with a header."""

    name = "csv"
    patterns = ("*.csv", "*.csv.gz", "*.tsv", "*.tsv.gz")

    def read_file(self, path: Path, stats: ImportStats) -> Iterator[ImportedRecord]:
        """Yield one record per data row."""
        delimiter = "\t" if path.name.removesuffix(".gz").endswith(".tsv") else ","
        ignored: set[str] = set()
        with open_text(path) as handle:
            rows = csv.reader(handle, delimiter=delimiter)
            header = [name.strip() for name in next(rows, [])]
            kind = table_kind(path, header)
            if kind == "comment" and _items_table(set(header)):
                header = ["id" if name == "item_id" else name for name in header]
            start = rows.line_num + 1  # rows are located by their first physical line
            for row in rows:
                record = _row_record(kind, header, row, ignored, stats, f"{path.name}:{start}")
                if record is not None:
                    yield record
                start = rows.line_num + 1
        log_ignored(path, ignored)


def _row_record(
    kind: str, header: list[str], row: list[str], ignored: set[str], stats: ImportStats, where: str
) -> ImportedRecord | None:
    if not any(cell.strip() for cell in row):
        return None
    if len(row) != len(header):
        stats.skip(where, "wrong number of columns", f"{len(row)} not {len(header)}")
        return None
    return build(kind, row_fields(kind, header, row), ignored, stats, where)
