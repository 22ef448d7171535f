"""HateXplain (Mathew et al., AAAI 2021), in the Hugging Face per-split JSON-lines layout.

One file per split, ``hatexplain_<split>.jsonl`` (often gzip-compressed), one
post per line::

    {"id": "1178...065_twitter",
     "annotators": {"label": [0, 2, 2], "annotator_id": [83, 3, 51],
                    "target": [["Women"], ["Women"], ["None"]]},
     "rationales": [[0, 1, 1, 0], [0, 0, 1, 0]],
     "post_tokens": ["a", "tokenised", "post", "..."]}

``annotators`` spelled as the authors' own release does, a list of
``{"label", "annotator_id", "target"}`` objects with the labels as words, is
read too.

How the records are built:

- Item id ``hatexplain-<post id>``: the post ids are unique across splits, so
  a re-import overwrites. The text is the post's tokens joined by spaces, which
  is all the release has.
- Annotator ids are ``hatexplain-<n>``: the numbers are the release's own and
  mean nothing in another corpus.
- Labels: 0 hate speech, 1 normal, 2 offensive. Every vote goes to two tasks,
  as Davidson's do, so both corpora share them: ``toxicity`` (1 unless normal)
  and ``hate_offensive`` coded like Davidson's ``class`` (0 hate speech,
  1 offensive, 2 neither).
- The token ``rationales`` (one 0/1 mask per annotator who gave one), the
  ``post_tokens`` and the annotators' ``targets`` are kept in the comment's
  metadata for explanations. They are lists, which the transform never turns
  into features (see :mod:`mlcycle.featurization.metadata`).
- The official split is kept as ``metadata.official_split``, not ``split``:
  only validation and test are here, and the labeler follows a ``split`` field,
  so it would put every post in dev or test and none in train. Without it the
  labeler splits HateXplain by a hash of the id like any corpus without splits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from mlcycle.contracts.comments import Comment, Vote
from mlcycle.importers.base import (
    FileImporter,
    ImportedRecord,
    ImportStats,
    open_text,
    stem,
    validated,
)

SOURCE = "hatexplain"
BINARY_TASK = "toxicity"
CLASS_TASK = "hate_offensive"
# The release's label codes, as numbers or as the authors' words.
HATE, NORMAL, OFFENSIVE = 0, 1, 2
_LABEL_WORDS = {"hatespeech": HATE, "normal": NORMAL, "offensive": OFFENSIVE}
# The release's code -> Davidson's class code (0 hate, 1 offensive, 2 neither).
DAVIDSON_CLASS = {HATE: 0, OFFENSIVE: 1, NORMAL: 2}
_SPLIT = re.compile(r"[_-](?P<split>train|validation|val|dev|test)$", re.I)


def file_split(path: Path) -> str | None:
    """``hatexplain_validation.jsonl.gz`` -> ``validation``."""
    match = _SPLIT.search(stem(path))
    return match["split"].lower() if match else None


class HatexplainImporter(FileImporter):
    """Posts, their rationales, and one vote per annotator under two tasks."""

    name = "hatexplain"
    patterns = ("*.jsonl", "*.jsonl.gz")

    def read_file(self, path: Path, stats: ImportStats) -> Iterator[ImportedRecord]:
        """Yield each post followed by its votes."""
        split = file_split(path)
        with open_text(path) as handle:
            for line_no, line in enumerate(handle, start=1):
                if line.strip():
                    yield from _post(line, split, stats, f"{path.name}:{line_no}")


def _post(line: str, split: str | None, stats: ImportStats, where: str) -> Iterator[ImportedRecord]:
    try:
        post = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        stats.skip(where, "not JSON", str(exc)[:120])
        return
    if not isinstance(post, dict) or not isinstance(post.get("id"), str | int):
        stats.skip(where, "post without an id")
        return
    tokens = post.get("post_tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        stats.skip(where, "post without tokens")
        return
    annotators = _annotators(post.get("annotators"))
    if annotators is None:
        stats.skip(where, "unreadable annotators")
        return
    item_id = f"{SOURCE}-{post['id']}"
    metadata: dict[str, Any] = {"dataset": SOURCE, "post_tokens": tokens}
    if split:
        metadata["official_split"] = split
    rationales = post.get("rationales")
    metadata["rationales"] = rationales if isinstance(rationales, list) else []
    metadata["targets"] = [target for _, _, target in annotators]  # one list per annotator
    fields = {"id": item_id, "text": " ".join(tokens), "source": SOURCE, "metadata": metadata}
    comment = validated(Comment, fields, stats, where)
    if comment is None:
        return
    yield comment
    yield from _votes(item_id, annotators, stats, where)


def _annotators(raw: Any) -> list[tuple[str, Any, list[str]]] | None:
    """``(annotator id, raw label, targets)`` per annotator, from either layout; None if neither."""
    rows: Iterable[tuple[Any, Any, Any]]
    if isinstance(raw, dict):  # Hugging Face: one list per field
        ids, labels = raw.get("annotator_id"), raw.get("label")
        targets = raw.get("target") or [[] for _ in ids or ()]
        if not (isinstance(ids, list) and isinstance(labels, list) and isinstance(targets, list)):
            return None
        if not len(ids) == len(labels) == len(targets):
            return None
        rows = zip(ids, labels, targets, strict=True)
    elif isinstance(raw, list) and all(isinstance(a, dict) for a in raw):  # the authors' JSON
        rows = ((a.get("annotator_id"), a.get("label"), a.get("target") or []) for a in raw)
    else:
        return None
    return [(str(i), label, _strings(target)) for i, label, target in rows]


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _label(raw: Any) -> int | None:
    if isinstance(raw, str):
        return _LABEL_WORDS.get(raw.strip().lower())
    if isinstance(raw, int) and not isinstance(raw, bool) and raw in DAVIDSON_CLASS:
        return raw
    return None


def _votes(
    item_id: str, annotators: list[tuple[str, Any, list[str]]], stats: ImportStats, where: str
) -> Iterator[Vote]:
    seen: set[str] = set()
    for annotator, raw, _ in annotators:
        label = _label(raw)
        if annotator in seen:
            stats.skip(where, "duplicate annotator", annotator)
            continue
        seen.add(annotator)
        if label is None:
            stats.skip(where, "bad label", f"{annotator}={raw!r}")
            continue
        common = {"item_id": item_id, "annotator_id": f"{SOURCE}-{annotator}", "source": SOURCE}
        coded = ((BINARY_TASK, int(label != NORMAL)), (CLASS_TASK, DAVIDSON_CLASS[label]))
        for task, value in coded:
            vote = validated(Vote, {**common, "task": task, "label": value}, stats, where)
            if vote is not None:
                yield vote
