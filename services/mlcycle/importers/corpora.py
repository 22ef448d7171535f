"""Every labeled corpus of a folder at once, each recognised by its files.

>>> importer = get_importer("corpora:english")       # doctest: +SKIP
>>> records = importer.read([Path("data/")])          # doctest: +SKIP

The folder (and its sub-folders) is searched for the files each corpus ships
under its own name, and each corpus is read by its own importer:

- ``davidson``: ``labeled_data.csv[.gz]``;
- ``md-agreement``, ``convabuse``, ``hs-brexit`` and ``armis`` (Arabic): the
  LeWiDi release's ``<Dataset>_<split>.json[.gz]``;
- ``hatexplain``: ``hatexplain_<split>.jsonl[.gz]``.

Every corpus maps onto the binary ``toxicity`` task (and Davidson and
HateXplain onto ``hate_offensive`` too), and every comment's ``source`` names
its corpus, so a training job can weigh each corpus and report each apart.
Other files (derived CSVs, readmes) are not corpora and are left alone.

A selection narrows what is read: a list of corpus names, or ``english``,
which leaves out the corpora in other languages. It is written after the
format name, ``corpora:english`` or ``corpora:davidson,hatexplain``, so that
every caller that names a format (the CLI, the demo) can carry it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlcycle.common.errors import InvalidInput
from mlcycle.importers.base import MAX_LOGGED_SKIPS, FileImporter, ImportedRecord, ImportStats
from mlcycle.importers.davidson import DavidsonImporter
from mlcycle.importers.hatexplain import HatexplainImporter
from mlcycle.importers.lewidi import LewidiImporter

NAME = "corpora"
ENGLISH = "english"


@dataclass(frozen=True)
class CorpusKind:
    """One known corpus: how its files are named, which importer reads them, its language."""

    name: str
    files: re.Pattern[str]
    importer: type[FileImporter]
    language: str


# In the order they are read. The names are the comments' ``source`` as each importer sets
# it (a LeWiDi corpus's is its file name's dataset part, lower-cased).
CORPORA = (
    CorpusKind("davidson", re.compile(r"^labeled_data\.csv$"), DavidsonImporter, "en"),
    CorpusKind("md-agreement", re.compile(r"^md-agreement_(train|dev|test)\.json$", re.I),
               LewidiImporter, "en"),
    CorpusKind("convabuse", re.compile(r"^convabuse_(train|dev|test)\.json$", re.I),
               LewidiImporter, "en"),
    CorpusKind("hs-brexit", re.compile(r"^hs-brexit_(train|dev|test)\.json$", re.I),
               LewidiImporter, "en"),
    CorpusKind("hatexplain",
               re.compile(r"^hatexplain\w*?_(train|validation|val|dev|test)\.jsonl$", re.I),
               HatexplainImporter, "en"),
    CorpusKind("armis", re.compile(r"^armis_(train|dev|test)\.json$", re.I), LewidiImporter, "ar"),
)  # fmt: skip
KINDS = {kind.name: kind for kind in CORPORA}


def corpus_of(path: Path) -> str | None:
    """The corpus a file belongs to, from its name alone; None for any other file."""
    name = path.name.removesuffix(".gz")
    for kind in CORPORA:
        if kind.files.match(name):
            return kind.name
    return None


def find_corpora(paths: list[Path]) -> dict[str, list[Path]]:
    """Corpus name -> its files, in the order of :data:`CORPORA`, from files and folders."""
    found: dict[str, set[Path]] = {}
    for path in map(Path, paths):
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            if corpus_of(path) is None:  # named on purpose, so it cannot be skipped quietly
                raise InvalidInput(
                    f"{path} is not a file of a known corpus",
                    details={"corpora": list(KINDS)},
                )
            candidates = [path]
        else:
            raise InvalidInput(f"no such file or folder: {path}")
        for candidate in candidates:
            corpus = corpus_of(candidate)
            if corpus is not None:
                found.setdefault(corpus, set()).add(candidate)
    return {name: sorted(found[name]) for name in KINDS if name in found}


def parse_selection(selection: str) -> tuple[tuple[str, ...], bool]:
    """``"english"`` -> ((), True); ``"davidson,hatexplain"`` -> (those names, False)."""
    words = [w.strip().lower() for w in selection.split(",") if w.strip()]
    english = ENGLISH in words
    names = tuple(w for w in words if w != ENGLISH)
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        raise InvalidInput(
            f"unknown corpus {', '.join(map(repr, unknown))}; known corpora: "
            f"{', '.join(KINDS)} (or {ENGLISH!r} for every English one)",
            details={"corpora": list(KINDS)},
        )
    return names, english


def format_with_selection(fmt: str, only: list[str] | None, english: bool) -> str:
    """The format name a caller's ``--only``/``--english`` options make: ``corpora:...``."""
    if not only and not english:
        return fmt
    if fmt.strip().lower() != NAME:
        raise InvalidInput(f"--only and --english go with --format {NAME}, not {fmt!r}")
    words = [w for part in only or () for w in part.split(",") if w.strip()]
    return f"{NAME}:{','.join(words + ([ENGLISH] if english else []))}"


class CorporaImporter:
    """Each recognised corpus of the given folders, read by its own importer, one after another."""

    name = NAME

    def __init__(self, selection: str = "") -> None:
        self.only, self.english = parse_selection(selection)
        self.stats = ImportStats()
        # Corpus -> what its importer read, complete once the stream is exhausted.
        self.per_corpus: dict[str, ImportStats] = {}
        self.selected: dict[str, list[Path]] = {}

    def read(self, paths: list[Path]) -> Iterator[ImportedRecord]:
        """Find and select the corpora now (raising :class:`InvalidInput`), then stream them."""
        self.selected = self.select(paths)
        self.stats = ImportStats(files=[str(p) for files in self.selected.values() for p in files])
        self.per_corpus = {}
        return self._stream()

    def select(self, paths: list[Path]) -> dict[str, list[Path]]:
        """The selected corpora found under ``paths`` and their files; InvalidInput if none."""
        if not paths:
            raise InvalidInput(f"no folder given to the {NAME} importer")
        found = find_corpora(paths)
        missing = [name for name in self.only if name not in found]
        if missing:
            raise InvalidInput(
                f"corpus {', '.join(map(repr, missing))} not found in "
                f"{', '.join(map(str, paths))}",
                details={"found": list(found)},
            )
        selected = {
            name: files
            for name, files in found.items()
            if (not self.only or name in self.only)
            and (not self.english or KINDS[name].language == "en")
        }
        if not selected:
            raise InvalidInput(
                f"no {'English ' if self.english else ''}corpus found in "
                f"{', '.join(map(str, paths))}",
                details={"found": list(found), "known": list(KINDS)},
            )
        return selected

    def _stream(self) -> Iterator[ImportedRecord]:
        for name, files in self.selected.items():
            importer = KINDS[name].importer()
            importer.name = name  # its log lines name the corpus, not the shared format
            self.per_corpus[name] = importer.stats
            for record in importer.read(files):
                yield self.stats.count(record)
            self.per_corpus[name] = importer.stats
            self.stats.skipped += importer.stats.skipped
            self.stats.skipped_reasons.update(importer.stats.skipped_reasons)
            room = max(0, MAX_LOGGED_SKIPS - len(self.stats.examples))
            self.stats.examples.extend(importer.stats.examples[:room])
        self.stats.log_summary(NAME)

    def describe(self) -> str:
        """The corpora read, for the terminal: ``corpora: davidson, hatexplain``."""
        return f"{NAME}: {', '.join(self.selected)}" if self.selected else NAME
