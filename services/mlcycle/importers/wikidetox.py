"""Wikipedia Talk Labels (Wulczyn, Thain and Dixon, 2017): the dataset the original talk used.

The release is a pair of tab-separated files per task:

- ``toxicity_annotated_comments.tsv``: ``rev_id, comment, year, logged_in, ns,
  sample, split``, one row per comment. Newlines and tabs inside a comment were
  replaced by ``NEWLINE_TOKEN`` and ``TAB_TOKEN``; they are put back here.
- ``toxicity_annotations.tsv``: ``rev_id, worker_id, toxicity, toxicity_score``,
  one row per worker per comment (about ten per comment); ``toxicity`` is 0/1
  and ``toxicity_score`` runs from -2 (very toxic) to 2 (very healthy).

Files are recognised by their header, not their name, so they may be given in
any order, renamed, gzip-compressed, or as a folder holding both (other files
in the folder, such as the worker demographics, are ignored). The sibling
releases for personal attacks and aggression have the same shape with an
``attack`` or ``aggression`` column; their votes get that task name.

``rev_id`` is written as a float in the release (``2232.0``); it is
normalised to the integer string (``2232``) because it is the comment's
stable id everywhere else. Comments are read before votes so that a
consumer sees each comment before the votes about it.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.importers.base import (
    FileImporter,
    ImportedRecord,
    ImportStats,
    expand_paths,
    finite_float,
    open_text,
    validated,
)

SOURCE = "wikidetox"
COMMENT_COLUMNS = frozenset({"rev_id", "comment"})
VOTE_COLUMNS = frozenset({"rev_id", "worker_id"})
# The label column of each sibling release, in the order they are looked for.
TASK_COLUMNS = ("toxicity", "aggression", "attack")
_INTEGRAL = re.compile(r"^\s*(\d+)(?:\.0*)?\s*$")


def _raise_field_limit() -> None:
    # A few talk-page comments are longer than the csv module's 128 KiB default.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def integral_id(raw: str) -> str | None:
    """``"2232.0"`` -> ``"2232"``; None when ``raw`` is not a whole non-negative number."""
    match = _INTEGRAL.match(raw)
    return str(int(match.group(1))) if match else None


def clean_text(raw: str) -> str:
    """Put back the newlines and tabs the release replaced with tokens, and trim."""
    return raw.replace("NEWLINE_TOKEN", "\n").replace("TAB_TOKEN", "\t").strip()


def parse_bool(raw: str) -> bool:
    """``True``/``False`` as written by the release (and 1/0, which some copies use)."""
    value = raw.strip().lower()
    if value in {"true", "1", "1.0"}:
        return True
    if value in {"false", "0", "0.0"}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def parse_binary(raw: str) -> int:
    """A 0/1 label, written as ``1`` or ``1.0``."""
    value = finite_float(raw)
    if value not in (0.0, 1.0):
        raise ValueError(f"not 0 or 1: {raw!r}")
    return int(value)


def read_header(path: Path) -> list[str]:
    """The first row of a tab-separated file, or ``[]`` when it is empty or unreadable."""
    try:
        with open_text(path) as handle:
            return next(csv.reader(handle, delimiter="\t"), [])
    except (OSError, EOFError, UnicodeError):
        return []


def file_kind(path: Path) -> str | None:
    """``"comments"``, ``"votes"`` or None, from the file's header."""
    columns = set(read_header(path))
    if COMMENT_COLUMNS <= columns:
        return "comments"
    if VOTE_COLUMNS <= columns and columns & set(TASK_COLUMNS):
        return "votes"
    return None


class WikidetoxImporter(FileImporter):
    """Comments and per-worker votes from the Wikipedia Talk Labels TSV pair."""

    name = "wikidetox"
    patterns = ("*.tsv", "*.tsv.gz")

    def read(self, paths: list[Path]) -> Iterator[ImportedRecord]:
        """Classify the files by header (raising for an unknown one), comments first."""
        comments: list[Path] = []
        votes: list[Path] = []
        for path in map(Path, paths):
            explicit = not path.is_dir()
            for file in expand_paths([path], self.patterns, self.name):
                kind = file_kind(file)
                if kind is None and explicit:
                    raise InvalidInput(
                        f"{file} is neither a Wikipedia Talk Labels comments file "
                        "(rev_id, comment, ...) nor an annotations file "
                        "(rev_id, worker_id, toxicity, ...)",
                        details={"header": read_header(file)[:20]},
                    )
                if kind is not None:
                    (comments if kind == "comments" else votes).append(file)
        if not comments and not votes:
            raise InvalidInput(f"no Wikipedia Talk Labels files in {', '.join(map(str, paths))}")
        files = comments + votes
        self.stats = ImportStats(files=[str(p) for p in files])
        return self._stream(files, self.stats)

    def read_file(self, path: Path, stats: ImportStats) -> Iterator[ImportedRecord]:
        """Dispatch on the header: comments or annotations."""
        _raise_field_limit()
        with open_text(path) as handle:
            rows = csv.reader(handle, delimiter="\t")
            header = next(rows, [])
            if COMMENT_COLUMNS <= set(header):
                yield from _comments(path, header, rows, stats)
            else:
                yield from _votes(path, header, rows, stats)


def _comments(
    path: Path, header: list[str], rows: Iterator[list[str]], stats: ImportStats
) -> Iterator[ImportedRecord]:
    col = {name: i for i, name in enumerate(header)}
    for line, row in enumerate(rows, start=2):
        where = f"{path.name}:{line}"
        if len(row) != len(header):
            stats.skip(where, "wrong number of columns", f"{len(row)} instead of {len(header)}")
            continue
        rev_id = integral_id(row[col["rev_id"]])
        if rev_id is None:
            stats.skip(where, "bad rev_id", repr(row[col["rev_id"]][:40]))
            continue
        try:
            metadata = _comment_metadata(row, col)
        except ValueError as exc:
            stats.skip(where, "bad metadata", str(exc))
            continue
        fields = {"id": rev_id, "text": clean_text(row[col["comment"]]), "source": SOURCE}
        record = validated(Comment, {**fields, "metadata": metadata}, stats, where)
        if record is not None:
            yield record


def _comment_metadata(row: list[str], col: dict[str, int]) -> dict[str, object]:
    metadata: dict[str, object] = {}
    if "year" in col:
        metadata["year"] = int(finite_float(row[col["year"]]))
    if "logged_in" in col:
        metadata["logged_in"] = parse_bool(row[col["logged_in"]])
    for name in ("ns", "sample", "split"):
        if name in col:
            metadata[name] = row[col[name]].strip()
    return metadata


def _votes(
    path: Path, header: list[str], rows: Iterator[list[str]], stats: ImportStats
) -> Iterator[ImportedRecord]:
    col = {name: i for i, name in enumerate(header)}
    task = next(t for t in TASK_COLUMNS if t in col)
    score_col = col.get(f"{task}_score")
    for line, row in enumerate(rows, start=2):
        where = f"{path.name}:{line}"
        if len(row) != len(header):
            stats.skip(where, "wrong number of columns", f"{len(row)} instead of {len(header)}")
            continue
        item_id = integral_id(row[col["rev_id"]])
        worker = integral_id(row[col["worker_id"]]) or row[col["worker_id"]].strip()
        if item_id is None or not worker:
            stats.skip(where, "bad rev_id or worker_id")
            continue
        try:
            label = parse_binary(row[col[task]])
            score = finite_float(row[score_col]) if score_col is not None else None
        except ValueError as exc:
            stats.skip(where, "bad label or score", str(exc))
            continue
        fields = {"item_id": item_id, "annotator_id": worker, "label": label, "task": task}
        record = validated(Vote, {**fields, "score": score, "source": SOURCE}, stats, where)
        if record is not None:
            yield record
