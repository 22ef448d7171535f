"""Dataset importers: files in, validated comments and votes out, streaming.

>>> importer = get_importer("wikidetox")
>>> for record in importer.read([Path("data/")]):   # doctest: +SKIP
...     sink(record)
>>> importer.stats.skipped                            # doctest: +SKIP

Each call of :func:`get_importer` returns a fresh importer, so the ``stats``
of one import are never mixed with another's.
"""

from __future__ import annotations

from collections.abc import Callable

from mlcycle.common.errors import InvalidInput
from mlcycle.importers.base import ImportedRecord, Importer, ImportStats
from mlcycle.importers.corpora import CorporaImporter
from mlcycle.importers.csvfile import CsvImporter
from mlcycle.importers.davidson import DavidsonImporter
from mlcycle.importers.hatexplain import HatexplainImporter
from mlcycle.importers.jsonl import JsonlImporter
from mlcycle.importers.lewidi import LewidiImporter
from mlcycle.importers.wikidetox import WikidetoxImporter

# Format name -> importer factory. Factories rather than shared instances
# because an importer carries the stats of its latest read.
FORMATS: dict[str, Callable[[], Importer]] = {
    "wikidetox": WikidetoxImporter,
    "davidson": DavidsonImporter,
    "lewidi": LewidiImporter,
    "hatexplain": HatexplainImporter,
    "jsonl": JsonlImporter,
    "csv": CsvImporter,
    # Every corpus of a folder; takes a selection after a colon: ``corpora:english``.
    "corpora": CorporaImporter,
}


def get_importer(name: str) -> Importer:
    """A new importer for format ``name``; :class:`InvalidInput` names the known formats.

    ``corpora`` may carry a selection, ``corpora:english`` or ``corpora:davidson,armis``.
    """
    fmt, colon, selection = name.strip().lower().partition(":")
    if colon:
        if fmt != "corpora":
            raise InvalidInput(f"format {fmt!r} takes no selection; only corpora does")
        return CorporaImporter(selection)
    factory = FORMATS.get(fmt)
    if factory is None:
        known = ", ".join(FORMATS)
        raise InvalidInput(
            f"unknown dataset format {name!r}; known formats: {known}",
            details={"formats": list(FORMATS)},
        )
    return factory()


__all__ = ["FORMATS", "ImportStats", "ImportedRecord", "Importer", "get_importer"]
