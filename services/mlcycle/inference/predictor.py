"""The inference core shared by the REST API and the stream: texts in, predictions out.

For one request: pin the serving version, look every instance up in the cache
(one MGET), featurize the misses once each with the version's own transform,
score them with one gRPC ``Predict`` per ``predict_batch_size`` rows, store the
new scores (one pipelined write), and turn probabilities into predictions. If
the pinned version disappeared meanwhile (NOT_FOUND), the serving version is
refreshed at once and the request starts over with the new one, so the
transform, the cache keys and the answered ``model_version`` always agree.
The REST API takes the same steps, with the same helpers, on its event loop
(:mod:`mlcycle.inference.batching`), sharing them across concurrent requests.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlcycle.common.errors import InvalidInput, Unavailable
from mlcycle.common.settings import InferenceSettings
from mlcycle.featurization.sparse import SparseBatch
from mlcycle.featurization.tokens import TokenEncoder
from mlcycle.inference.answers import Source, format_predictions, observe_request
from mlcycle.inference.cache import (
    NoCache,
    ScoreCache,
    cache_key,
    decode_scores,
    encode_scores,
    key_prefix,
)
from mlcycle.inference.client import ModelClient, VersionGone
from mlcycle.inference.metrics import for_version
from mlcycle.inference.routed import Group, RoutedRequest, answer_groups
from mlcycle.inference.schemas import PredictionRow
from mlcycle.inference.tensors import padded_rows
from mlcycle.inference.tokens import tokenize
from mlcycle.inference.versions import ModelVersion, VersionTracker

if TYPE_CHECKING:
    from mlcycle.inference.evidence import EvidenceBook
    from mlcycle.inference.monitor import LiveMonitor
    from mlcycle.inference.offpath import OffPathScorer

Metadata = Sequence[Mapping[str, Any] | None]
__all__ = ["Predictor", "Scored", "Source", "format_predictions", "observe_request"]


@dataclass(frozen=True)
class Scored:
    """Class probabilities ``[n, classes]`` for a request, and the version that made them."""

    model: ModelVersion
    probabilities: np.ndarray
    cache_hits: int

    def predictions(self) -> list[PredictionRow]:
        """One prediction per row (see :func:`format_predictions`)."""
        return format_predictions(self.model, self.probabilities)


def check_metadata_fields(model: ModelVersion, metadata: Metadata) -> None:
    """InvalidInput naming the metadata fields the model's transform was not fitted on."""
    known = model.transform.metadata.fields
    unknown = {name for record in metadata if record for name in record if name not in known}
    if unknown:
        names = sorted(map(str, unknown))
        raise InvalidInput(
            f"metadata fields not known to model {model.name} version {model.version} "
            f"(transform {model.transform_version}): {', '.join(names)}",
            details={"unknown_fields": names, "known_fields": sorted(known)},
        )


class Predictor:
    """Scores texts with the serving model version (routed, during a rollout); thread-safe."""

    def __init__(
        self,
        config: InferenceSettings,
        *,
        client: ModelClient,
        tracker: VersionTracker,
        cache: ScoreCache | NoCache,
        monitor: LiveMonitor | None = None,
        evidence: EvidenceBook | None = None,
        offpath: OffPathScorer | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.tracker = tracker
        self.cache = cache
        # Handed every answered request's records (off the answer's path); None: not watched.
        self.monitor = monitor
        # A rollout's evidence (this process's tally) and its off-path scoring; None: neither.
        self.evidence = evidence
        self.offpath = offpath

    def predict(
        self,
        texts: Sequence[str],
        metadata: Metadata | None = None,
        *,
        unknown_fields: Literal["error", "ignore"] = "error",
        source: Source = "api",
        ids: Sequence[str] | None = None,
    ) -> tuple[ModelVersion, list[PredictionRow]]:
        """The stable version and one prediction per text (see :func:`format_predictions`).

        During a rollout each prediction names the version that gave it (stable or
        canary). ``ids`` name the records to the monitor (a comment's id) and route
        them (sticky per id), when they have one.
        """
        started = time.perf_counter()
        if self.tracker.serving().routed:
            return self._predict_routed(texts, metadata, unknown_fields, source, ids, started)
        scored = self.score(texts, metadata, unknown_fields=unknown_fields)
        predictions = format_predictions(scored.model, scored.probabilities)
        observe_request(scored.model, predictions, source, time.perf_counter() - started)
        if self.monitor is not None:
            self.monitor.observe(scored.model, texts, metadata, predictions, ids)
        return scored.model, predictions

    def score(
        self,
        texts: Sequence[str],
        metadata: Metadata | None = None,
        *,
        unknown_fields: Literal["error", "ignore"] = "error",
    ) -> Scored:
        """Class probabilities of ``texts`` (with their aligned ``metadata``) by the stable
        version, cache first."""
        if metadata is not None and len(metadata) != len(texts):
            raise InvalidInput(f"{len(texts)} texts but {len(metadata)} metadata objects")
        model = self.tracker.current()
        attempts = self.config.predict_retries + 1
        for _ in range(attempts):
            try:
                return self.score_with(model, texts, metadata, unknown_fields)
            except VersionGone:
                model = self.tracker.refresh_after_gone(model.version)
        raise version_churn(model, attempts)

    def score_with(
        self,
        model: ModelVersion,
        texts: Sequence[str],
        metadata: Metadata | None,
        unknown_fields: str = "ignore",
    ) -> Scored:
        """``texts`` scored by ``model`` itself, cache first (VersionGone when it is gone)."""
        if metadata is not None and unknown_fields == "error":
            check_metadata_fields(model, metadata)
        keys = instance_keys(model, texts, metadata)
        probabilities = np.empty((len(texts), len(model.classes)), np.float32)
        misses = fill_from_cache(self.cache.get_many(keys), keys, probabilities)
        if misses:
            firsts = [positions[0] for positions in misses.values()]
            fresh = self._model_scores(
                model,
                [texts[i] for i in firsts],
                None if metadata is None else [metadata[i] for i in firsts],
            )
            for row, positions in zip(fresh, misses.values(), strict=True):
                probabilities[positions] = row
            self.cache.set_many(cache_items(misses, fresh))
        return Scored(model, probabilities, count_cache_hits(model, len(texts), misses))

    def offpath_scores(
        self, model: ModelVersion, texts: Sequence[str], metadata: Metadata | None
    ) -> np.ndarray:
        """Class probabilities of ``texts`` by ``model``: the off-path scorer's calls."""
        return self.score_with(model, texts, metadata).probabilities

    def score_uncached(
        self, model: ModelVersion, texts: Sequence[str], metadata: Metadata | None = None
    ) -> np.ndarray:
        """Class probabilities of ``texts`` by ``model`` straight from the model server: the
        cache neither read nor written (a caller who asked that nothing be kept)."""
        return self._model_scores(model, list(texts), metadata)

    # -- during a rollout -----------------------------------------------------------------------

    def _predict_routed(
        self,
        texts: Sequence[str],
        metadata: Metadata | None,
        unknown_fields: str,
        source: Source,
        ids: Sequence[str] | None,
        started: float,
    ) -> tuple[ModelVersion, list[PredictionRow]]:
        if metadata is not None and len(metadata) != len(texts):
            raise InvalidInput(f"{len(texts)} texts but {len(metadata)} metadata objects")
        serving = self.tracker.serving()
        attempts = self.config.predict_retries + 1
        for _ in range(attempts):
            if metadata is not None and unknown_fields == "error":
                check_metadata_fields(serving.stable, metadata)  # the stable version's contract
            request = RoutedRequest(serving, texts, metadata, ids)
            try:
                answer_groups(request, self._score_group, self.evidence, self.tracker.refresh_soon)
            except VersionGone:
                self.tracker.refresh_after_gone(serving.stable.version)
                serving = self.tracker.serving()
                continue
            predictions = request.finish(
                source=source,
                seconds=time.perf_counter() - started,
                monitor=self.monitor,
                offpath=self.offpath,
            )
            return serving.stable, predictions
        raise version_churn(serving.stable, attempts)

    def _score_group(self, group: Group) -> np.ndarray:
        # The metadata was checked against the stable version's transform, for all of them.
        return self.score_with(group.model, group.texts, group.metadata).probabilities

    def _model_scores(
        self, model: ModelVersion, texts: list[str], metadata: Metadata | None
    ) -> np.ndarray:
        """Featurize ``texts`` and score them, one gRPC call per ``predict_batch_size`` rows."""
        if model.tokens is not None:
            return self._token_scores(model, model.tokens, texts)
        metrics = for_version(model.version)
        batch = featurize(model, texts, metadata)
        size = self.config.predict_batch_size
        out = np.empty((len(texts), len(model.classes)), np.float32)
        for start in range(0, len(texts), size):
            stop = min(len(texts), start + size)
            indices, values = padded_rows(batch, start, stop)
            called = time.perf_counter()
            answer = self.client.predict(model.name, model.version, indices, values)
            metrics.rpc_seconds.observe(time.perf_counter() - called)
            out[start:stop] = check_classes(model, answer)
        return out

    def _token_scores(
        self, model: ModelVersion, tokens: TokenEncoder, texts: list[str]
    ) -> np.ndarray:
        """:meth:`_model_scores` for a version that reads tokens (the encoder)."""
        metrics = for_version(model.version)
        batch = tokenize(tokens, model.version, texts)
        size = self.config.predict_batch_size
        out = np.empty((len(texts), len(model.classes)), np.float32)
        for start in range(0, len(texts), size):
            stop = min(len(texts), start + size)
            called = time.perf_counter()
            answer = self.client.predict_inputs(
                model.name, model.version, batch.rows(start, stop).inputs()
            )
            metrics.rpc_seconds.observe(time.perf_counter() - called)
            out[start:stop] = check_classes(model, answer)
        return out


def version_churn(model: ModelVersion, attempts: int) -> Unavailable:
    """The 503 of a request whose pinned version vanished ``attempts`` times in a row."""
    return Unavailable(
        f"model {model.name} changed version {attempts} times during one request",
        details={"model": model.name},
    )


def instance_keys(
    model: ModelVersion, texts: Sequence[str], metadata: Metadata | None
) -> list[str]:
    """The cache key of each instance under ``model`` (its version and transform)."""
    max_chars = model.transform.config.preprocess.max_chars
    prefix = key_prefix(model.name, model.version, model.transform_version)
    if metadata is None:
        return [cache_key(prefix, text, None, max_chars) for text in texts]
    return [
        cache_key(prefix, text, record, max_chars)
        for text, record in zip(texts, metadata, strict=True)
    ]


def fill_from_cache(
    values: Sequence[bytes | None], keys: Sequence[str], probabilities: np.ndarray
) -> dict[str, list[int]]:
    """Copy the cached rows into ``probabilities``; each distinct missing key and its positions.

    Duplicates of a missing key share one entry, so they are scored once.
    """
    n_classes = probabilities.shape[1]
    misses: dict[str, list[int]] = {}
    for i, value in enumerate(values):
        row = None if value is None else decode_scores(value, n_classes)
        if row is None:
            misses.setdefault(keys[i], []).append(i)
        else:
            probabilities[i] = row
    return misses


def cache_items(keys: Iterable[str], rows: np.ndarray) -> list[tuple[str, bytes]]:
    """``(key, value)`` pairs storing ``rows`` under ``keys``, in order."""
    return [(key, encode_scores(row)) for key, row in zip(keys, rows, strict=True)]


def count_cache_hits(model: ModelVersion, n: int, misses: Mapping[str, list[int]]) -> int:
    """Count a request's cache hits and misses under the model version; the hits."""
    hits = n - sum(len(positions) for positions in misses.values())
    metrics = for_version(model.version)
    metrics.cache_hits.inc(hits)
    metrics.cache_misses.inc(n - hits)
    return hits


def featurize(model: ModelVersion, texts: Sequence[str], metadata: Metadata | None) -> SparseBatch:
    """``texts`` featurized with the version's own transform (timed under the version)."""
    started = time.perf_counter()
    batch = model.transform.apply(texts, metadata, unknown_fields="ignore")
    for_version(model.version).featurize_seconds.observe(time.perf_counter() - started)
    return batch


def check_classes(model: ModelVersion, answer: np.ndarray) -> np.ndarray:
    """``answer``, unless it has another number of classes than the version's metadata lists."""
    if answer.shape[1] != len(model.classes):
        raise Unavailable(
            f"model {model.name} version {model.version} answered {answer.shape[1]} "
            f"class probabilities but its metadata lists {len(model.classes)} classes",
            details={"classes": list(model.classes)},
        )
    return answer
