"""Hate Speech and Offensive Language (Davidson et al., ICWSM 2017): ``labeled_data.csv``.

Columns: an unnamed row id, ``count`` (workers who coded the tweet),
``hate_speech``, ``offensive_language``, ``neither`` (how many of them chose
each class), ``class`` (the majority: 0 hate, 1 offensive, 2 neither) and
``tweet``. Tweets may contain newlines, so the file is read with the csv
module, never line by line. The text is kept exactly as published, HTML
entities included: undoing them is the featurizer's job, and the store should
hold what the source said.

The release has per-item counts, not per-worker rows, so each counted worker
becomes one vote with a made-up annotator id, marked ``synthetic_annotator``.
The ids are ``davidson-synthetic-<row id>-<n>``: unique per tweet, because
nothing says two tweets were coded by the same person, and claiming so would
feed fake worker histories to Dawid-Skene; and derived only from the row, so a
re-import produces the same ids and the store simply overwrites.

Each worker's judgement is emitted under two tasks, with the same annotator id:

- ``toxicity`` (binary, the project's main task): 1 for hate speech or
  offensive language, 0 for neither;
- ``hate_offensive`` (3 classes, the paper's own task): 0 hate speech,
  1 offensive language, 2 neither, the coding of the ``class`` column.

Two tasks rather than squeezing the class into ``score`` because ``score`` is a
continuous rating in the other sources (toxicity_score, severity); a separate
task keeps the 3-class information aggregatable with the same machinery.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.importers.base import FileImporter, ImportedRecord, ImportStats, open_text, validated

SOURCE = "davidson"
BINARY_TASK = "toxicity"
CLASS_TASK = "hate_offensive"
# Vote columns in the order of the paper's class codes 0, 1, 2.
CLASS_COLUMNS = ("hate_speech", "offensive_language", "neither")
REQUIRED = frozenset({"count", *CLASS_COLUMNS, "class", "tweet"})
# How the unnamed first column is spelled by the release and by common re-exports.
ID_COLUMNS = ("", "id", "Unnamed: 0")


def synthetic_annotator(row_id: str, n: int) -> str:
    """The made-up, stable id of the ``n``-th worker who coded row ``row_id``."""
    return f"davidson-synthetic-{row_id}-{n}"


class DavidsonImporter(FileImporter):
    """Tweets and one synthetic vote per counted worker, under two tasks."""

    name = "davidson"
    patterns = ("labeled_data.csv", "labeled_data.csv.gz")

    def read_file(self, path: Path, stats: ImportStats) -> Iterator[ImportedRecord]:
        """Yield each tweet followed by its votes."""
        with open_text(path) as handle:
            rows = csv.reader(handle)
            header = next(rows, [])
            col = _columns(path, header)
            # Rows are located by their first physical line, which is what a user can find.
            start = rows.line_num + 1
            for row in rows:
                yield from _records(row, col, len(header), f"{path.name}:{start}", stats)
                start = rows.line_num + 1


def _columns(path: Path, header: list[str]) -> dict[str, int]:
    col = {name.strip(): i for i, name in enumerate(header)}
    missing = REQUIRED - set(col)
    id_col = next((c for c in ID_COLUMNS if c in col), None)
    if missing or id_col is None:
        raise InvalidInput(
            f"{path} is not a Davidson labeled_data.csv",
            details={"missing_columns": sorted(missing) + ([] if id_col else ["(row id)"])},
        )
    col["id"] = col[id_col]
    return col


def _records(
    row: list[str], col: dict[str, int], width: int, where: str, stats: ImportStats
) -> Iterator[ImportedRecord]:
    if len(row) != width:
        stats.skip(where, "wrong number of columns", f"{len(row)} instead of {width}")
        return
    row_id = row[col["id"]].strip()
    try:
        counts = [int(row[col[name]]) for name in CLASS_COLUMNS]
        total, klass = int(row[col["count"]]), int(row[col["class"]])
    except ValueError as exc:
        stats.skip(where, "bad count or class", str(exc))
        return
    if not row_id or min(counts) < 0 or sum(counts) != total or klass not in (0, 1, 2):
        stats.skip(where, "inconsistent vote counts", f"count={total} votes={counts} class={klass}")
        return
    item_id = f"{SOURCE}-{row_id}"
    comment = validated(
        Comment,
        {"id": item_id, "text": row[col["tweet"]], "source": SOURCE, "metadata": {"class": klass}},
        stats,
        where,
    )
    if comment is None:
        return
    yield comment
    yield from _votes(item_id, row_id, counts)


def _votes(item_id: str, row_id: str, counts: list[int]) -> Iterator[Vote]:
    n = 0
    for klass, how_many in enumerate(counts):
        for _ in range(how_many):
            annotator = synthetic_annotator(row_id, n)
            common = {"item_id": item_id, "annotator_id": annotator, "source": SOURCE}
            yield Vote(**common, task=BINARY_TASK, label=int(klass != 2), synthetic_annotator=True)
            yield Vote(**common, task=CLASS_TASK, label=klass, synthetic_annotator=True)
            n += 1
