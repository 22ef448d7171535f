"""Word-level explanations of served scores: the version's ``explain`` signature, mapped to words.

For texts scored by a model version, the explainer featurizes them with that
version's own transform, calls the version's ``explain`` signature on the model
server (integrated gradients of the served score per input entry, see
:mod:`mlcycle.trainer.export`) and splits each entry's attribution over the
words of the original text (:func:`mlcycle.featurization.attribution.attribute_to_words`).
Decision record 0018 says why this method.

Explanations are cached beside the scores, per (model, version, transform,
text, metadata). Unlike a score's key, an explanation's hashes the text exactly
as sent: two texts that differ only in whitespace share a score but not their
offsets.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.explanations import Explained, NotExplainable, Span
from mlcycle.featurization.attribution import attribute_to_words
from mlcycle.featurization.inputs import Metadata
from mlcycle.featurization.sparse import SparseBatch
from mlcycle.inference.cache import NoCache, ScoreCache
from mlcycle.inference.client import ModelClient
from mlcycle.inference.metrics import for_version
from mlcycle.inference.predictor import featurize
from mlcycle.inference.schemas import PredictionRow, SpanRow
from mlcycle.inference.servable import ModelVersion
from mlcycle.inference.tensors import padded_rows

EXPLAIN_PREFIX = "mlcycle:explain"


class VersionSource(Protocol):
    """Where a version that just answered is found (the version tracker)."""

    def loaded(self, version: int) -> ModelVersion | None:
        """Version ``version`` if it is kept loaded."""
        ...


@dataclass(frozen=True)
class Explanation:
    """One text's explanation by one model version."""

    score: float  # the served score the explain signature recomputed
    spans: list[Span]  # one per word of the text as sent, in order

    def to_bytes(self) -> bytes:
        """The cache's value: the score and each span as [begin, end, score]."""
        return orjson.dumps([self.score, [[s.begin, s.end, s.score] for s in self.spans]])

    @classmethod
    def from_bytes(cls, value: bytes, text: str) -> Explanation | None:
        """The cached explanation of ``text``; None when the value is unreadable."""
        try:
            score, spans = orjson.loads(value)
            return cls(
                float(score),
                [Span(begin=b, end=e, text=text[b:e], score=s) for b, e, s in spans],
            )
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return None


def explain_key(model: ModelVersion, text: str, metadata: Mapping[str, Any] | None) -> str:
    """The cache key of ``text``'s explanation by ``model``: the exact text, not normalized."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16)
    if metadata:
        digest.update(b"\x00")
        digest.update(orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS, default=str))
    prefix = f"{EXPLAIN_PREFIX}:{model.name}:{model.version}:{model.transform_version}:"
    return prefix + digest.hexdigest()


def check_explainable(model: ModelVersion) -> None:
    """NotExplainable (409) for a version known to have no explain signature: the encoder,
    which reads tokens. A version exported before explanations is found out by its call."""
    if model.tokens is not None:
        raise NotExplainable.of(model.name, model.version)


@dataclass
class Lookup:
    """One request's explanations as the cache gave them, and what it misses."""

    keys: list[str]
    found: list[Explanation | None]
    # Each distinct missing key and its positions: a repeated text is explained once.
    misses: dict[str, list[int]]

    @classmethod
    def read(cls, keys: list[str], values: Sequence[bytes | None], texts: Sequence[str]) -> Lookup:
        """The cached explanations of ``texts`` (``values`` read at ``keys``)."""
        found = [
            None if value is None else Explanation.from_bytes(value, texts[i])
            for i, value in enumerate(values)
        ]
        misses: dict[str, list[int]] = {}
        for i, explanation in enumerate(found):
            if explanation is None:
                misses.setdefault(keys[i], []).append(i)
        return cls(keys, found, misses)

    def missing(
        self, texts: Sequence[str], metadata: Metadata | None
    ) -> tuple[list[str], Metadata | None]:
        """The texts (and metadata) to explain: one per distinct missing key."""
        firsts = [positions[0] for positions in self.misses.values()]
        return [texts[i] for i in firsts], None if metadata is None else [
            metadata[i] for i in firsts
        ]

    def fill(self, fresh: Sequence[Explanation]) -> list[tuple[str, bytes]]:
        """Put the fresh explanations in place; the cache items that store them."""
        for positions, explanation in zip(self.misses.values(), fresh, strict=True):
            for i in positions:
                self.found[i] = explanation
        return [(key, e.to_bytes()) for key, e in zip(self.misses, fresh, strict=True)]

    def explanations(self) -> list[Explanation]:
        """One per text, in order (after :meth:`fill`)."""
        return [e for e in self.found if e is not None]


class Explainer:
    """Explains texts with a given model version, cache first; thread-safe and blocking
    (lineage, Perspective's doNotStore requests). The API's event loop explains through
    :class:`mlcycle.inference.explain_async.ExplainBatcher` instead."""

    def __init__(
        self, client: ModelClient, cache: ScoreCache | NoCache, *, batch_rows: int
    ) -> None:
        self.client = client
        self.cache = cache
        self.batch_rows = batch_rows

    def explain(
        self,
        model: ModelVersion,
        texts: Sequence[str],
        metadata: Metadata | None = None,
        *,
        store: bool = True,
    ) -> list[Explanation]:
        """One explanation per text by ``model``; ``store=False`` writes nothing to the cache."""
        keys = explain_keys(model, texts, metadata)
        lookup = Lookup.read(keys, self.cache.get_many(keys), texts)
        if lookup.misses:
            fresh = self.compute(model, *lookup.missing(texts, metadata))
            items = lookup.fill(fresh)
            if store:
                self.cache.set_many(items)
        return lookup.explanations()

    def compute(
        self, model: ModelVersion, texts: Sequence[str], metadata: Metadata | None
    ) -> list[Explanation]:
        """Explanations of ``texts`` by ``model`` from the model server, not cached."""
        check_explainable(model)
        metrics = for_version(model.version)
        batch = featurize(model, texts, metadata)
        explained = []
        for rows in chunks(batch, self.batch_rows):
            called = time.perf_counter()
            explained.append(self.client.explain(model.name, model.version, *rows))
            metrics.rpc_seconds.observe(time.perf_counter() - called)
        return split_over_words(model, texts, batch, explained)

def chunks(batch: SparseBatch, rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The padded (indices, values) of each explain call: ``rows`` rows at most."""
    return [
        padded_rows(batch, start, min(len(batch), start + rows))
        for start in range(0, len(batch), rows)
    ]


def explain_keys(model: ModelVersion, texts: Sequence[str], metadata: Metadata | None) -> list[str]:
    """The cache key of each text's explanation (NotExplainable for an encoder version)."""
    check_explainable(model)
    if metadata is not None and len(metadata) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(metadata)} metadata objects")
    return [
        explain_key(model, text, None if metadata is None else metadata[i])
        for i, text in enumerate(texts)
    ]


def split_over_words(
    model: ModelVersion,
    texts: Sequence[str],
    batch: SparseBatch,
    explained: Sequence[Explained],
) -> list[Explanation]:
    """Each text's explanation: its row's attributions (calls of consecutive rows, in
    order) split over the words of the text as sent."""
    out: list[Explanation] = []
    for answer in explained:
        for row in range(len(answer.scores)):
            columns, _ = batch.row(len(out))
            attributions = np.asarray(answer.attributions[row, : len(columns)])
            words = attribute_to_words(model.transform, texts[len(out)], columns, attributions)
            out.append(Explanation(float(answer.scores[row]), words.spans()))
    return out


def explain_predictions(
    explainer: Explainer,
    versions: VersionSource,
    texts: Sequence[str],
    metadata: Metadata | None,
    predictions: Sequence[PredictionRow],
    *,
    store: bool = True,
) -> None:
    """Add ``spans`` to each prediction, explained by the version that gave its score."""
    for model, rows in by_version(versions, predictions):
        explained = explainer.explain(
            model,
            [texts[i] for i in rows],
            None if metadata is None else [metadata[i] for i in rows],
            store=store,
        )
        attach(predictions, rows, explained)


def by_version(
    versions: VersionSource, predictions: Sequence[PredictionRow]
) -> list[tuple[ModelVersion, list[int]]]:
    """The positions of the predictions each version gave, with that version."""
    positions: dict[int, list[int]] = {}
    for i, prediction in enumerate(predictions):
        positions.setdefault(prediction["model_version"], []).append(i)
    out = []
    for version, rows in positions.items():
        model = versions.loaded(version)
        if model is None:
            raise Unavailable(
                f"model version {version} answered but is no longer loaded: ask again",
                details={"version": version},
            )
        out.append((model, rows))
    return out


def attach(
    predictions: Sequence[PredictionRow], rows: list[int], explained: Sequence[Explanation]
) -> None:
    """Each explanation's spans on its prediction, as the answer's plain dicts."""
    for i, explanation in zip(rows, explained, strict=True):
        predictions[i]["spans"] = [
            SpanRow(begin=s.begin, end=s.end, text=s.text, score=s.score) for s in explanation.spans
        ]
