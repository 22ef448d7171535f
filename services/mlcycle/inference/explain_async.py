"""Explanations on the API's event loop: concurrent requests share explain calls.

A plain miss is cheap under load because the request batcher merges concurrent
requests into one Predict call. An explanation is a second model call per request
(the version's ``explain`` signature), and one call per request cost about four
times a plain miss at 8 clients, most of it the model server's fixed cost per call.
So explanations are micro-batched the same way (:class:`~mlcycle.inference.drain.Drain`):
what was queued while a batch ran goes together in the next one, one featurizing
and one explain call per model version for the whole batch, and nothing ever waits
for a batch to fill.

The cache is read before and written after, per request, through the request
batcher's asyncio clients (:meth:`RequestBatcher.async_clients`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from mlcycle.common.errors import MlcycleError
from mlcycle.featurization.inputs import Metadata
from mlcycle.inference.cache import AsyncNoCache, AsyncScoreCache
from mlcycle.inference.client import AsyncModelClient
from mlcycle.inference.drain import Drain, take_all
from mlcycle.inference.explain import (
    Explainer,
    Explanation,
    Lookup,
    VersionSource,
    attach,
    by_version,
    chunks,
    explain_keys,
    split_over_words,
)
from mlcycle.inference.metrics import for_version
from mlcycle.inference.predictor import featurize, format_predictions
from mlcycle.inference.routing import Serving
from mlcycle.inference.schemas import PredictionRow
from mlcycle.inference.servable import ModelVersion

# Texts featurized and split on the event loop itself; more go to a worker thread.
INLINE_TEXTS = 4
# Explain batches in flight at once.
CONCURRENT_BATCHES = 2
T = TypeVar("T")
AsyncClients = Callable[[], tuple[AsyncScoreCache | AsyncNoCache, AsyncModelClient]]


# Texts, metadata and ids (and whether they are live traffic) -> the predictions with spans.
ExplainedPredictions = Callable[..., Awaitable[tuple[ModelVersion, list[PredictionRow]]]]


class CurrentVersions(VersionSource, Protocol):
    """The version tracker: what requests are routed between now, and any version kept
    loaded."""

    def serving(self) -> Serving:
        """The versions requests are routed between (the stable one answers)."""
        ...


@dataclass
class ExplainJob:
    """One text to explain by one version, and where its explanation goes."""

    model: ModelVersion
    text: str
    metadata: Mapping[str, Any] | None
    done: asyncio.Future[Explanation]


class ExplainBatcher:
    """Explains texts on the API's event loop, cache first, concurrent requests together."""

    def __init__(self, explainer: Explainer, clients: AsyncClients) -> None:
        self.explainer = explainer
        self.clients = clients
        self._drain: Drain[ExplainJob] = Drain(take_all, self._run, limit=CONCURRENT_BATCHES)

    async def explain(
        self,
        model: ModelVersion,
        texts: Sequence[str],
        metadata: Metadata | None,
        *,
        store: bool = True,
    ) -> list[Explanation]:
        """One explanation per text by ``model`` (``store=False``: the cache is not written)."""
        cache, _ = self.clients()
        keys = explain_keys(model, texts, metadata)
        lookup = Lookup.read(keys, await cache.get_many(keys), texts)
        if lookup.misses:
            missing, missing_metadata = lookup.missing(texts, metadata)
            loop = asyncio.get_running_loop()
            jobs = [
                ExplainJob(
                    model,
                    text,
                    None if missing_metadata is None else missing_metadata[i],
                    loop.create_future(),
                )
                for i, text in enumerate(missing)
            ]
            self._drain.put(jobs)
            fresh = await asyncio.gather(*(job.done for job in jobs))
            items = lookup.fill(fresh)
            if store:
                await cache.set_many(items)
        return lookup.explanations()

    async def join(self) -> None:
        """Wait for the batches in flight (at shutdown)."""
        await self._drain.join()

    async def _run(self, jobs: list[ExplainJob]) -> None:
        groups: dict[int, list[ExplainJob]] = {}
        for job in jobs:
            groups.setdefault(job.model.version, []).append(job)
        for group in groups.values():
            try:
                fresh = await self._compute(group)
            except Exception as exc:  # each waiting request answers its own error
                for job in group:
                    if not job.done.done():
                        job.done.set_exception(exc)
                continue
            for job, explanation in zip(group, fresh, strict=True):
                if not job.done.done():
                    job.done.set_result(explanation)

    async def _compute(self, jobs: list[ExplainJob]) -> list[Explanation]:
        model = jobs[0].model
        texts = [job.text for job in jobs]
        metadata = None
        if any(job.metadata for job in jobs):
            metadata = [job.metadata for job in jobs]
        batch = await off_the_loop(len(texts), featurize, model, texts, metadata)
        _, client = self.clients()
        called = time.perf_counter()
        explained = await asyncio.gather(
            *(
                client.explain(model.name, model.version, *rows)
                for rows in chunks(batch, self.explainer.batch_rows)
            )
        )
        for_version(model.version).rpc_seconds.observe(time.perf_counter() - called)
        return await off_the_loop(len(texts), split_over_words, model, texts, batch, explained)


async def off_the_loop(texts: int, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` on the event loop for a few texts, on a worker thread for more.

    A few texts take a millisecond or two. Handing that to a thread costs more than it
    saves: the loop and the worker then take turns on the GIL, each turn up to Python's
    switch interval (5 ms).
    """
    if texts <= INLINE_TEXTS:
        return work(*args)
    return await asyncio.to_thread(work, *args)


async def explain_predictions_async(
    batcher: ExplainBatcher,
    versions: VersionSource,
    texts: Sequence[str],
    metadata: Metadata | None,
    predictions: Sequence[PredictionRow],
    *,
    store: bool = True,
) -> None:
    """Add ``spans`` to each prediction, explained by the version that gave its score."""
    for model, rows in by_version(versions, predictions):
        explained = await batcher.explain(
            model,
            [texts[i] for i in rows],
            None if metadata is None else [metadata[i] for i in rows],
            store=store,
        )
        attach(predictions, rows, explained)


class Predicting(Protocol):
    """The request batcher: predictions, and the counting of a request answered elsewhere."""

    async def predict(
        self,
        texts: Sequence[str],
        metadata: Metadata | None,
        ids: Sequence[str] | None = None,
        *,
        live: bool = True,
    ) -> tuple[ModelVersion, list[PredictionRow]]:
        """The serving version and one prediction per text."""
        ...

    def observe(
        self,
        model: ModelVersion,
        texts: Sequence[str],
        metadata: Metadata | None,
        predictions: list[PredictionRow],
        ids: Sequence[str] | None,
        *,
        started: float,
        live: bool,
    ) -> None:
        """Count a request ``model`` answered alone (metrics, the live monitor)."""
        ...


async def predict_and_explain(
    explaining: ExplainBatcher,
    predicting: Predicting,
    versions: CurrentVersions,
    texts: Sequence[str],
    metadata: Metadata | None,
    ids: Sequence[str] | None,
    *,
    live: bool = True,
) -> tuple[ModelVersion, list[PredictionRow]]:
    """One prediction per text with the words behind its score (``spans``).

    Outside a rollout a binary stable version answers everything, and its explain
    signature answers the score too (the same forward pass as ``serving_default``'s,
    equal to float rounding): the explanation *is* the prediction, one model call and
    one cache entry per text rather than two of each. During a rollout the prediction
    is routed as any other, the stable version explaining its rows alongside, and a
    canary's rows are explained by the canary once known. A multi-class version's
    explanation carries only its predicted class's probability, so it is predicted
    and explained alongside too.
    """
    started = time.perf_counter()
    try:
        serving = versions.serving()
    except MlcycleError:
        return await predicting.predict(texts, metadata, ids, live=live)  # it says why
    stable = serving.stable
    if not serving.routed and stable.binary:
        explained = await explaining.explain(stable, texts, metadata)
        scores = np.array([explanation.score for explanation in explained], np.float64)
        predictions = format_predictions(stable, np.stack([1.0 - scores, scores], axis=1))
        attach(predictions, list(range(len(texts))), explained)
        predicting.observe(stable, texts, metadata, predictions, ids, started=started, live=live)
        return stable, predictions
    explanations = asyncio.ensure_future(explaining.explain(stable, texts, metadata))
    try:
        model, predictions = await predicting.predict(texts, metadata, ids, live=live)
    except BaseException:
        explanations.cancel()
        await asyncio.gather(explanations, return_exceptions=True)
        raise
    explained = await explanations
    mine = [i for i, p in enumerate(predictions) if p["model_version"] == stable.version]
    attach(predictions, mine, [explained[i] for i in mine])
    others = [i for i, p in enumerate(predictions) if p["model_version"] != stable.version]
    if others:
        await explain_predictions_async(
            explaining,
            versions,
            [texts[i] for i in others],
            None if metadata is None else [metadata[i] for i in others],
            [predictions[i] for i in others],
        )
    return model, predictions
