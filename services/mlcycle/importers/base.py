"""What every importer shares: the protocol, the skip accounting and file opening.

An importer turns dataset files into validated :class:`~mlcycle.contracts.comments.Comment`
and :class:`~mlcycle.contracts.comments.Vote` records, streaming: it reads row by row and
yields as it goes, so memory stays flat however large the file. It never sends
anything anywhere; the caller decides where the records go (Kafka, a store, a
test's list).

Two kinds of trouble are told apart. A file that cannot be what the format
says (missing, wrong header) raises :class:`~mlcycle.common.errors.InvalidInput`
at once. A bad row inside a good file is skipped, counted with its reason in
:class:`ImportStats` and logged (the first few in full), so a million-row
import does not die on one broken line.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO, runtime_checkable

from pydantic import ValidationError

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import Comment, Vote

logger = logging.getLogger(__name__)

ImportedRecord = Comment | Vote

# Enough examples to diagnose a bad file without flooding the log.
MAX_LOGGED_SKIPS = 20


@dataclass
class ImportStats:
    """What one ``read`` produced: records yielded and rows skipped, with reasons."""

    comments: int = 0
    votes: int = 0
    skipped: int = 0
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    # The first few skips as "file:line: reason: detail", for the user to look at.
    examples: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def count(self, record: ImportedRecord) -> ImportedRecord:
        """Tally one yielded record and hand it back."""
        if isinstance(record, Comment):
            self.comments += 1
        else:
            self.votes += 1
        return record

    def skip(self, where: str, reason: str, detail: str = "") -> None:
        """Record one skipped row; ``reason`` is a short fixed phrase used as the tally key."""
        self.skipped += 1
        self.skipped_reasons[reason] += 1
        if len(self.examples) < MAX_LOGGED_SKIPS:
            example = f"{where}: {reason}" + (f": {detail}" if detail else "")
            self.examples.append(example)
            logger.warning("skipped a row: %s", example)

    def log_summary(self, fmt: str) -> None:
        """One closing line; a warning when anything was skipped."""
        level = logging.WARNING if self.skipped else logging.INFO
        logger.log(
            level,
            "%s import: %d comments, %d votes, %d rows skipped %s",
            fmt,
            self.comments,
            self.votes,
            self.skipped,
            dict(self.skipped_reasons) if self.skipped else "",
        )

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly summary."""
        return {
            "comments": self.comments,
            "votes": self.votes,
            "skipped": self.skipped,
            "skipped_reasons": dict(self.skipped_reasons),
            "examples": list(self.examples),
            "files": list(self.files),
        }


@runtime_checkable
class Importer(Protocol):
    """Reads dataset files of one format into records, in constant memory.

    ``stats`` describes the latest ``read``; it is complete once the returned
    iterator is exhausted.
    """

    name: str
    stats: ImportStats

    def read(self, paths: list[Path]) -> Iterator[ImportedRecord]:
        """Validate ``paths`` now, then stream their records."""
        ...


class FileImporter:
    """An importer that reads each of its files on its own, in the order given.

    Subclasses set ``name`` and ``patterns`` (the file names a folder is
    searched for) and implement :meth:`read_file`.
    """

    name: str = ""
    patterns: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.stats = ImportStats()

    def read(self, paths: list[Path]) -> Iterator[ImportedRecord]:
        """Check ``paths`` (raising :class:`InvalidInput` now) and return the record stream."""
        files = expand_paths(paths, self.patterns, self.name)
        self.stats = ImportStats(files=[str(p) for p in files])
        return self._stream(files, self.stats)

    def _stream(self, files: list[Path], stats: ImportStats) -> Iterator[ImportedRecord]:
        for path in files:
            for record in self.read_file(path, stats):
                yield stats.count(record)
        stats.log_summary(self.name)

    def read_file(self, path: Path, stats: ImportStats) -> Iterator[ImportedRecord]:
        """Yield the records of one file, calling ``stats.skip`` for bad rows."""
        raise NotImplementedError


def open_text(path: Path) -> TextIO:
    """Open ``path`` as UTF-8 text, through gzip when its name ends with ``.gz``.

    ``newline=""`` because the csv module must see embedded newlines itself;
    undecodable bytes become U+FFFD rather than aborting a whole file.
    A leading byte-order mark (common in spreadsheet exports) is dropped.
    """
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")


def expand_paths(paths: Iterable[Path], patterns: Iterable[str], fmt: str) -> list[Path]:
    """Files to read: each path as given, or a folder's files matching ``patterns``, sorted."""
    patterns = tuple(patterns)
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted({p for pattern in patterns for p in path.glob(pattern) if p.is_file()})
            if not found:
                raise InvalidInput(
                    f"no {fmt} files in folder {path}",
                    details={"looked_for": list(patterns)},
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidInput(f"no such file or folder: {path}")
    if not files:
        raise InvalidInput(f"no files given to the {fmt} importer")
    return files


def stem(path: Path) -> str:
    """The file name less ``.gz`` and its extension: ``a/b_train.json.gz`` -> ``b_train``."""
    name = path.name.removesuffix(".gz")
    return name.rsplit(".", 1)[0] if "." in name else name


def describe_error(exc: ValidationError) -> str:
    """The first validation problem as ``field: message``, short enough for a log line."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "record"
    return f"{where}: {first.get('msg', 'invalid')}"


def validated(
    model: type[Comment] | type[Vote], fields: dict[str, object], stats: ImportStats, where: str
) -> ImportedRecord | None:
    """Build ``model`` from ``fields``; on failure count a skip and return None."""
    try:
        return model(**fields)
    except ValidationError as exc:
        stats.skip(where, f"invalid {model.__name__.lower()}", describe_error(exc))
        return None


def finite_float(raw: str) -> float:
    """``float(raw)``, refusing NaN and infinities (they do not survive JSON)."""
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {raw!r}")
    return value
