"""The LeWiDi 2023 harmonised JSON release (SemEval-2023 Task 11, "Learning With Disagreements").

Four corpora share one format: MD-Agreement, HS-Brexit, ArMIS and ConvAbuse,
one file per split named ``<Dataset>_<split>.json`` (often gzip-compressed).
Each file is a single JSON object keyed by the item number, restarting at "1"
in every split; each item has ``text``, comma-separated ``annotators`` and
``annotations`` in the same order, ``hard_label``, ``soft_label``, ``lang``,
``split`` and a dataset-specific ``other_info``.

How the records are built:

- Item id ``<dataset>-<split>-<key>`` (``md-agreement-train-17``): the dataset
  and split come from the file name (the item's own ``split`` field wins), so
  ids are stable and distinct across splits and datasets.
- Annotator ids are prefixed with the dataset (``md-agreement-Ann423``): the
  release numbers annotators from 1 in every corpus, and ``Ann1`` of one corpus
  is not ``Ann1`` of another.
- The comment's and the votes' ``source`` is the corpus (``md-agreement``,
  ``hs-brexit``, ``armis``, ``convabuse``), not the shared file format: a job
  trained on a mix weighs and reports each corpus by it.
- Every corpus is a binary "is this abusive" judgement (offensive, hate speech,
  misogyny, abuse), so votes go to the project's main task ``toxicity``; the
  corpus's own wording is kept in the comment's ``metadata.annotation_task``.
- ConvAbuse is different in two ways. Its ``text`` is itself a JSON string with
  ``prev_agent``, ``prev_user``, ``agent`` and ``user``: the labelled utterance
  is ``user`` and the three others are kept in ``metadata.context``. Its
  annotations are abuse severities in {-3..1} (1 = not abusive): the label is
  1 when the severity is below 0, following the release's soft-label
  definition, and the raw severity is kept in ``score``.
- The official split, language, hard and soft labels and the (small)
  ``other_info`` go into the comment's metadata.

The files are parsed member by member (see :class:`ObjectStream`), never
loaded whole. An annotator listed twice on one item (it happens once in
MD-Agreement) keeps the first vote; the repeat is counted as skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.importers.base import (
    FileImporter,
    ImportedRecord,
    ImportStats,
    open_text,
    stem,
    validated,
)

TASK = "toxicity"
_FILE_NAME = re.compile(r"^(?P<dataset>.+?)[_-](?P<split>train|dev|test|val|validation)$", re.I)
_WS = re.compile(r"[ \t\n\r]*")
# other_info larger than this (serialised) keeps only its short scalar entries.
MAX_OTHER_INFO_BYTES = 2048


class ObjectStream:
    """The members of one top-level JSON object, decoded one at a time.

    orjson parses whole documents only, so this walks the object's syntax
    itself and hands each key and each value to the standard library's
    incremental ``raw_decode``, reading more text whenever a value runs past
    the buffer. Memory is bounded by the largest single member.
    """

    def __init__(self, handle: TextIO, chunk_chars: int = 1 << 16) -> None:
        self._handle = handle
        self._chunk = chunk_chars
        self._decoder = json.JSONDecoder()
        self._buf = ""
        self._pos = 0
        self._consumed = 0  # characters dropped from the buffer, for error positions
        self._eof = False

    def items(self) -> Iterator[tuple[str, Any]]:
        """Yield ``(key, value)`` pairs; raise :class:`InvalidInput` on malformed JSON."""
        self._expect("{")
        if self._peek() == "}":
            return
        while True:
            key = self._value()
            if not isinstance(key, str):
                raise self._error("expected a string key")
            self._expect(":")
            yield key, self._value()
            if self._expect(",}") == "}":
                return

    def _more(self) -> bool:
        data = self._handle.read(self._chunk)
        if not data:
            self._eof = True
            return False
        self._consumed += self._pos
        self._buf = self._buf[self._pos :] + data
        self._pos = 0
        return True

    def _peek(self) -> str:
        while True:
            self._pos = _WS.match(self._buf, self._pos).end()  # type: ignore[union-attr]
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._more():
                return ""

    def _expect(self, allowed: str) -> str:
        char = self._peek()
        if not char or char not in allowed:
            raise self._error(f"expected one of {' '.join(allowed)}")
        self._pos += 1
        return char

    def _value(self) -> Any:
        self._peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
                # A value that ends exactly at the buffer's end may be cut short (a number).
                if end < len(self._buf) or self._eof:
                    self._pos = end
                    return value
            except json.JSONDecodeError as exc:
                if self._eof:
                    raise self._error(exc.msg) from None
            self._more()

    def _error(self, message: str) -> InvalidInput:
        return InvalidInput(
            f"malformed JSON: {message}", details={"char": self._consumed + self._pos}
        )


def dataset_and_split(path: Path) -> tuple[str, str | None]:
    """``MD-Agreement_train.json.gz`` -> ``("md-agreement", "train")``."""
    name = stem(path)
    match = _FILE_NAME.match(name)
    dataset, split = (match["dataset"], match["split"].lower()) if match else (name, None)
    return re.sub(r"[^a-z0-9]+", "-", dataset.lower()).strip("-") or "lewidi", split


class LewidiImporter(FileImporter):
    """Items and per-annotator votes from the LeWiDi 2023 JSON files."""

    name = "lewidi"
    patterns = ("*.json", "*.json.gz")

    def read_file(self, path: Path, stats: ImportStats) -> Iterator[ImportedRecord]:
        """Stream one ``<Dataset>_<split>.json[.gz]`` file."""
        dataset, file_split = dataset_and_split(path)
        with open_text(path) as handle:
            try:
                for key, item in ObjectStream(handle).items():
                    yield from _item(dataset, file_split, key, item, stats, f"{path.name}#{key}")
            except InvalidInput as exc:
                raise InvalidInput(f"{path}: {exc.message}", details=exc.details) from None


def _item(
    dataset: str, file_split: str | None, key: str, item: Any, stats: ImportStats, where: str
) -> Iterator[ImportedRecord]:
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        stats.skip(where, "item without text")
        return
    split = str(item.get("split") or file_split or "").strip() or None
    item_id = f"{dataset}-{split}-{key}" if split else f"{dataset}-{key}"
    task_name = str(item.get("annotation task", ""))
    severity = dataset.startswith("convabuse") or "abus" in task_name.lower()
    text, context = _text_and_context(item["text"])
    if text is None:
        stats.skip(where, "conversation without a user turn")
        return
    metadata = _metadata(item, dataset, split, task_name)
    if context:
        metadata["context"] = context
    fields = {"id": item_id, "text": text, "source": dataset, "metadata": metadata}
    comment = validated(Comment, fields, stats, where)
    if comment is None:
        return
    yield comment
    yield from _votes(item, item_id, dataset, severity, stats, where)


def _text_and_context(raw: str) -> tuple[str | None, dict[str, str]]:
    """The labelled text; for a ConvAbuse-style JSON conversation, ``user`` and the rest."""
    if not raw.lstrip().startswith("{"):
        return raw, {}
    try:
        turns = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw, {}  # a tweet that merely starts with a brace
    if not isinstance(turns, dict):
        return raw, {}
    user = turns.get("user")
    context = {k: v for k, v in turns.items() if k != "user" and isinstance(v, str)}
    return (user if isinstance(user, str) else None), context


def _metadata(item: dict[str, Any], dataset: str, split: str | None, task: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"dataset": dataset}
    if split:
        metadata["split"] = split
    if task:
        metadata["annotation_task"] = task
    if isinstance(item.get("lang"), str):
        metadata["lang"] = item["lang"]
    hard = _as_int(item.get("hard_label"))  # a string in some files, an int in others
    if hard is not None:
        metadata["hard_label"] = hard
    soft = item.get("soft_label")
    if isinstance(soft, dict):
        metadata["soft_label"] = {
            str(k): float(v) for k, v in soft.items() if isinstance(v, int | float)
        }
    n = _as_int(item.get("number of annotations"))
    if n is not None:
        metadata["n_annotations"] = n
    if isinstance(item.get("other_info"), dict) and item["other_info"]:
        metadata["other_info"] = _small(_normalise_keys(item["other_info"]))
    return metadata


def _votes(
    item: dict[str, Any], item_id: str, dataset: str, severity: bool, stats: ImportStats, where: str
) -> Iterator[ImportedRecord]:
    annotators = _split_list(item.get("annotators"))
    annotations = _split_list(item.get("annotations"))
    if len(annotators) != len(annotations):
        stats.skip(where, "annotators and annotations differ in length")
        return
    seen: set[str] = set()
    for annotator, raw in zip(annotators, annotations, strict=True):
        value = _as_int(raw)
        if annotator in seen:
            stats.skip(where, "duplicate annotator", annotator)
            continue
        seen.add(annotator)
        if value is None or (not severity and value not in (0, 1)):
            stats.skip(where, "bad annotation", f"{annotator}={raw!r}")
            continue
        label, score = (int(value < 0), value) if severity else (value, None)
        fields = {"item_id": item_id, "annotator_id": f"{dataset}-{annotator}", "task": TASK}
        vote = validated(
            Vote, {**fields, "label": label, "score": score, "source": dataset}, stats, where
        )
        if vote is not None:
            yield vote


def _split_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    if isinstance(value, str) and value.strip():
        return [part.strip() for part in value.split(",")]
    return []


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _normalise_keys(value: Any) -> Any:
    """Keys such as ``conversation_id(s)`` or ``target.system`` become ``conversation_id_s``,
    ``target_system``: dots and brackets make trouble as search-engine field names."""
    if isinstance(value, dict):
        return {
            (re.sub(r"[^0-9a-zA-Z]+", "_", str(k)).strip("_").lower() or "_"): _normalise_keys(v)
            for k, v in value.items()
        }
    return value


def _small(info: dict[str, Any]) -> dict[str, Any]:
    if len(orjson.dumps(info)) <= MAX_OTHER_INFO_BYTES:
        return info
    return {k: v for k, v in info.items() if isinstance(v, str | int | float) and len(str(v)) < 200}
