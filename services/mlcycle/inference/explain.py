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
from mlcycle.contracts.explanations import NotExplainable, Span
from mlcycle.featurization.attribution import attribute_to_words
from mlcycle.featurization.inputs import Metadata
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


class Explainer:
    """Explains texts with a given model version, cache first; thread-safe."""

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
        check_explainable(model)
        if metadata is not None and len(metadata) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(metadata)} metadata objects")
        keys = [
            explain_key(model, text, None if metadata is None else metadata[i])
            for i, text in enumerate(texts)
        ]
        found: list[Explanation | None] = [
            None if value is None else Explanation.from_bytes(value, texts[i])
            for i, value in enumerate(self.cache.get_many(keys))
        ]
        # Each distinct missing key and its positions: a repeated text is explained once.
        misses: dict[str, list[int]] = {}
        for i, explanation in enumerate(found):
            if explanation is None:
                misses.setdefault(keys[i], []).append(i)
        if misses:
            firsts = [positions[0] for positions in misses.values()]
            fresh = self.compute(
                model,
                [texts[i] for i in firsts],
                None if metadata is None else [metadata[i] for i in firsts],
            )
            for positions, explanation in zip(misses.values(), fresh, strict=True):
                for i in positions:
                    found[i] = explanation
            if store:
                self.cache.set_many(
                    [(key, e.to_bytes()) for key, e in zip(misses, fresh, strict=True)]
                )
        return [e for e in found if e is not None]

    def compute(
        self, model: ModelVersion, texts: Sequence[str], metadata: Metadata | None
    ) -> list[Explanation]:
        """Explanations of ``texts`` by ``model`` from the model server, not cached."""
        check_explainable(model)
        metrics = for_version(model.version)
        batch = featurize(model, texts, metadata)
        out: list[Explanation] = []
        for start in range(0, len(texts), self.batch_rows):
            stop = min(len(texts), start + self.batch_rows)
            indices, values = padded_rows(batch, start, stop)
            called = time.perf_counter()
            explained = self.client.explain(model.name, model.version, indices, values)
            metrics.rpc_seconds.observe(time.perf_counter() - called)
            for row in range(start, stop):
                columns, _ = batch.row(row)
                attributions = np.asarray(explained.attributions[row - start, : len(columns)])
                words = attribute_to_words(model.transform, texts[row], columns, attributions)
                out.append(Explanation(float(explained.scores[row - start]), words.spans()))
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
    by_version: dict[int, list[int]] = {}
    for i, prediction in enumerate(predictions):
        by_version.setdefault(prediction["model_version"], []).append(i)
    for version, rows in by_version.items():
        model = versions.loaded(version)
        if model is None:
            raise Unavailable(
                f"model version {version} answered but is no longer loaded: ask again",
                details={"version": version},
            )
        explained = explainer.explain(
            model,
            [texts[i] for i in rows],
            None if metadata is None else [metadata[i] for i in rows],
            store=store,
        )
        for i, explanation in zip(rows, explained, strict=True):
            predictions[i]["spans"] = [
                SpanRow(begin=s.begin, end=s.end, text=s.text, score=s.score)
                for s in explanation.spans
            ]
