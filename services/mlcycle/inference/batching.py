"""The API's scoring on its event loop: cache reads and model calls shared across requests.

No request waits for a thread. A request pins the serving version, computes its cache
keys and joins the next MGET, which reads the keys of every request that asked since the
previous one was sent: cache hits are answered from that one read and never wait behind
misses. Misses join a queue; a batch takes what is queued (up to ``predict_batch_size``
rows of one model version, a text asked twice scored once), featurizes it with one
``Transform.apply``, scores it with one ``grpc.aio`` ``Predict``, answers, and stores the
scores in one Redis write. Up to :data:`IN_FLIGHT` batches run at once, so the model
server scores one while this process featurizes the next; one beyond the first starts
only when enough requests wait to make it worth its fixed costs. At low load a request
is read and scored at once, alone: nothing ever waits for a batch to fill.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlcycle.common.errors import InvalidInput, MlcycleError, Unavailable
from mlcycle.featurization.sparse import SparseBatch
from mlcycle.featurization.tokens import TokenBatch, TokenEncoder
from mlcycle.inference.batch_jobs import Job, Lookup, settle, take_batch
from mlcycle.inference.cache import AsyncNoCache, AsyncScoreCache
from mlcycle.inference.client import AsyncModelClient, VersionGone
from mlcycle.inference.drain import Drain, take_all
from mlcycle.inference.loop import LoopRunner
from mlcycle.inference.metrics import for_version
from mlcycle.inference.offpath import ScoreFunction
from mlcycle.inference.predictor import (
    Metadata,
    Predictor,
    cache_items,
    check_classes,
    check_metadata_fields,
    count_cache_hits,
    featurize,
    fill_from_cache,
    format_predictions,
    instance_keys,
    observe_request,
    version_churn,
)
from mlcycle.inference.routed import Group, RoutedRequest, answer_groups_async
from mlcycle.inference.routing import Serving
from mlcycle.inference.schemas import PredictionRow
from mlcycle.inference.tensors import padded_rows
from mlcycle.inference.tokens import tokenize
from mlcycle.inference.versions import ModelVersion

log = logging.getLogger(__name__)

# Batches scored at once, so the model server scores one while the loop featurizes the
# next. A batch beyond the first starts only once OVERLAP_AT requests are queued: a smaller
# one would pay a featurization's, a Predict call's and a write's fixed costs for one or
# two rows, and at 8 clients single-comment batches cost a third more CPU per request
# than batches of three or four. Fewer queued requests wait for the running batch, which
# takes them all when it is done. Measured on 2 cores at 8 clients, against 2 batches with
# no threshold: 1,184 instead of 940 misses/s, p50 6.5 instead of 8.2 ms (docs/benchmarks.md).
IN_FLIGHT = 3
OVERLAP_AT = 3
# MGETs in flight at once: lookups queued meanwhile share the next one, so under load
# one read answers many requests instead of each turn of the loop sending its own.
READS_IN_FLIGHT = 1
# Batches of up to this many characters are featurized on the loop (about a millisecond);
# longer ones on a worker thread, so the loop keeps answering meanwhile.
INLINE_FEATURIZE_CHARS = 8192
# How long a readiness check waits for the loop to say whether Predict calls go through.
READY_TIMEOUT_S = 1.0

Result = tuple[ModelVersion, list[PredictionRow]]


class RequestBatcher:
    """Scores API requests on the event loop, sharing cache reads and Predict calls among them.

    The asyncio clients of the predictor's cache and model server are made on the
    loop of the first request; :meth:`close` releases them.
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_rows: int,
        in_flight: int = IN_FLIGHT,
        overlap_at: int = OVERLAP_AT,
    ) -> None:
        self.predictor = predictor
        self.max_rows = max_rows
        self._cache: AsyncScoreCache | AsyncNoCache | None = None
        self._client: AsyncModelClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reads: Drain[Lookup] = Drain(take_all, self._read, limit=READS_IN_FLIGHT)
        self._batches: Drain[Job] = Drain(
            functools.partial(take_batch, max_rows=max_rows),
            self._run_batch,
            limit=in_flight,
            overlap_at=overlap_at,
        )
        self._closing = False

    async def predict(
        self,
        texts: Sequence[str],
        metadata: Metadata | None,
        ids: Sequence[str] | None = None,
        *,
        live: bool = True,
    ) -> Result:
        """The serving version and one prediction per text, cache first (``ids``: the
        instances' own, for the monitor; not ``live``: a look that is not served traffic,
        which the monitor and the shadow do not see)."""
        if self._closing:
            raise Unavailable("the inference service is shutting down")
        started = time.perf_counter()
        if metadata is not None and len(metadata) != len(texts):
            raise InvalidInput(f"{len(texts)} texts but {len(metadata)} metadata objects")
        tracker = self.predictor.tracker
        serving = tracker.serving()
        if serving.routed:
            return await self._predict_routed(serving, texts, metadata, ids, started, live)
        model = serving.stable
        attempts = self.predictor.config.predict_retries + 1
        for _ in range(attempts):
            try:
                probabilities = await self._score(model, texts, metadata)
                break
            except VersionGone:
                model = await asyncio.to_thread(tracker.refresh_after_gone, model.version)
        else:
            raise version_churn(model, attempts)
        predictions = format_predictions(model, probabilities)
        self.observe(model, texts, metadata, predictions, ids, started=started, live=live)
        return model, predictions

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
        """Count a request ``model`` answered alone (metrics; the monitor's, if ``live``)."""
        observe_request(model, predictions, "api", time.perf_counter() - started)
        if live and self.predictor.monitor is not None:
            self.predictor.monitor.observe(model, texts, metadata, predictions, ids)

    def model_server_reachable(self, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Whether Predict calls reach the model server now; for readiness, from another thread.

        The model server is also asked over another channel (versions, readiness), and
        each channel reconnects on its own after the server was away: the service is
        ready once predictions go through again, not before.
        """
        loop, client = self._loop, self._client
        if loop is None or client is None:
            return True  # no call made yet: the first one dials at once
        try:
            return asyncio.run_coroutine_threadsafe(client.reachable(), loop).result(timeout_s)
        except (concurrent.futures.TimeoutError, RuntimeError):  # a stalled or closed loop
            return False

    async def close(self) -> None:
        """Let the running batches finish, then close the asyncio clients."""
        self._closing = True
        await self._reads.join()
        await self._batches.join()
        if self._cache is not None:
            await self._cache.close()
        if self._client is not None:
            await self._client.close()

    # -- one request ----------------------------------------------------------------------------

    async def _predict_routed(
        self,
        serving: Serving,
        texts: Sequence[str],
        metadata: Metadata | None,
        ids: Sequence[str] | None,
        started: float,
        live: bool,
    ) -> Result:
        """:meth:`predict` during a rollout: each version's group scored at once, then
        the canary's failures by the stable version (see :mod:`mlcycle.inference.routed`)."""
        predictor = self.predictor
        attempts = predictor.config.predict_retries + 1
        for _ in range(attempts):
            if metadata is not None:
                check_metadata_fields(serving.stable, metadata)  # the stable version's contract
            request = RoutedRequest(serving, texts, metadata, ids)
            try:
                await answer_groups_async(
                    request, self._score_group, predictor.evidence, predictor.tracker.refresh_soon
                )
            except VersionGone:
                tracker = predictor.tracker
                await asyncio.to_thread(tracker.refresh_after_gone, serving.stable.version)
                serving = tracker.serving()
                continue
            predictions = request.finish(
                source="api",
                seconds=time.perf_counter() - started,
                monitor=predictor.monitor if live else None,
                offpath=predictor.offpath if live else None,
            )
            return serving.stable, predictions
        raise version_churn(serving.stable, attempts)

    async def _score_group(self, group: Group) -> np.ndarray:
        # The metadata was checked against the stable version's transform, for all of them.
        return await self._score(group.model, group.texts, group.metadata, check=False)

    # -- off the answers' path ------------------------------------------------------------------

    def offpath_scores_on(self, loop: asyncio.AbstractEventLoop) -> ScoreFunction:
        """The off-path scorer's score function, for its thread: scored here, on ``loop``.

        The shadow's scores (and production's beside a canary answer) then share this
        loop's cache reads and its one ``grpc.aio`` channel, and production's off-path rows
        share batches with each other: a private loop of the blocking clients would be a
        second loop bound to gRPC, which wakes on every answer's completion too. Their
        batches are taken only when no answer waits, so they never hold an answer back.
        """
        runner = LoopRunner(loop)

        def score(model: ModelVersion, texts: Sequence[str], metadata: Metadata | None):
            return runner.run(self._score(model, texts, metadata, check=False, offpath=True))

        return score

    async def _score(
        self,
        model: ModelVersion,
        texts: Sequence[str],
        metadata: Metadata | None,
        check: bool = True,
        offpath: bool = False,
    ) -> np.ndarray:
        if metadata is not None and check:
            check_metadata_fields(model, metadata)
        keys = instance_keys(model, texts, metadata)
        probabilities = np.empty((len(texts), len(model.classes)), np.float32)
        misses = fill_from_cache(await self._lookup(keys), keys, probabilities)
        if misses:
            firsts = [positions[0] for positions in misses.values()]
            fresh = await self._model_scores(
                model,
                list(misses),
                [texts[i] for i in firsts],
                None if metadata is None else [metadata[i] for i in firsts],
                offpath,
            )
            for row, positions in zip(fresh, misses.values(), strict=True):
                probabilities[positions] = row
        count_cache_hits(model, len(texts), misses)
        return probabilities

    async def _lookup(self, keys: list[str]) -> list[bytes | None]:
        """The cached values of ``keys``, read with those of the requests that asked meanwhile."""
        if not keys:
            return []
        lookup = Lookup(keys, asyncio.get_running_loop().create_future())
        self._reads.put([lookup])
        return await lookup.future

    async def _model_scores(
        self,
        model: ModelVersion,
        keys: list[str],
        texts: list[str],
        metadata: list[Any] | None,
        offpath: bool = False,
    ) -> np.ndarray:
        """Probabilities of distinct missing instances, scored in the shared batches."""
        loop = asyncio.get_running_loop()
        jobs = [
            Job(
                model,
                keys[start : start + self.max_rows],
                texts[start : start + self.max_rows],
                None if metadata is None else metadata[start : start + self.max_rows],
                loop.create_future(),
                offpath,
            )
            for start in range(0, len(keys), self.max_rows)
        ]
        self._batches.put(jobs)
        if len(jobs) == 1:
            return await jobs[0].future
        results = await asyncio.gather(*(job.future for job in jobs), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return np.concatenate(results)

    # -- shared work ----------------------------------------------------------------------------

    def async_clients(self) -> tuple[AsyncScoreCache | AsyncNoCache, AsyncModelClient]:
        """The cache and model client of the calling event loop (the API's), made on first
        use and closed by :meth:`close`; explanations share them."""
        if self._cache is None or self._client is None:
            self._cache = self.predictor.cache.aio()
            self._client = self.predictor.client.aio()
            self._loop = asyncio.get_running_loop()
        return self._cache, self._client

    async def _read(self, lookups: list[Lookup]) -> None:
        """One MGET for ``lookups``, every one queued since the previous MGET was sent."""
        cache, _ = self.async_clients()
        try:
            values = await cache.get_many([key for lookup in lookups for key in lookup.keys])
        except Exception as exc:  # the cache absorbs Redis errors; anything else is a bug
            log.exception("score cache lookup failed")
            for lookup in lookups:
                settle(lookup.future, None, exc)
            return
        start = 0
        for lookup in lookups:
            stop = start + len(lookup.keys)
            settle(lookup.future, values[start:stop], None)
            start = stop

    async def _run_batch(self, jobs: list[Job]) -> None:
        try:
            rows, where, scored = await self._score_batch(jobs)
        except (MlcycleError, VersionGone) as exc:
            for job in jobs:
                settle(job.future, None, exc)
        except Exception as exc:  # never leave a request hanging
            log.exception("prediction batch failed")
            for job in jobs:
                settle(job.future, None, exc)
        else:
            for job, positions in zip(jobs, where, strict=True):
                settle(job.future, rows[positions], None)
            # Stored once the answers are on their way: a request for the same text in
            # the meantime is only scored again, and the next batch starts sooner.
            cache, _ = self.async_clients()
            await cache.set_many(scored)

    async def _score_batch(
        self, jobs: list[Job]
    ) -> tuple[np.ndarray, list[list[int]], list[tuple[str, bytes]]]:
        """Probabilities of the batch's distinct texts, each job's rows, the cache items."""
        model = jobs[0].model
        _, client = self.async_clients()
        row_of: dict[str, int] = {}
        texts: list[str] = []
        metadata: list[Any] = []
        where: list[list[int]] = []
        for job in jobs:
            positions = []
            for i, key in enumerate(job.keys):
                row = row_of.get(key)
                if row is None:
                    row = row_of[key] = len(texts)
                    texts.append(job.texts[i])
                    metadata.append(None if job.metadata is None else job.metadata[i])
                positions.append(row)
            where.append(positions)
        if model.tokens is not None:  # the encoder: token tensors from its own tokenizer
            tokens = await self._tokenize(model, model.tokens, texts)
            called = time.perf_counter()
            answer = await client.predict_inputs(model.name, model.version, tokens.inputs())
        else:
            with_metadata = any(job.metadata is not None for job in jobs)
            batch = await self._featurize(model, texts, metadata if with_metadata else None)
            indices, values = padded_rows(batch, 0, len(texts))
            called = time.perf_counter()
            answer = await client.predict(model.name, model.version, indices, values)
        for_version(model.version).rpc_seconds.observe(time.perf_counter() - called)
        check_classes(model, answer)
        return answer, where, cache_items(row_of, answer)

    @staticmethod
    async def _featurize(
        model: ModelVersion, texts: list[str], metadata: list[Any] | None
    ) -> SparseBatch:
        if sum(map(len, texts)) <= INLINE_FEATURIZE_CHARS:
            return featurize(model, texts, metadata)
        return await asyncio.to_thread(featurize, model, texts, metadata)

    @staticmethod
    async def _tokenize(model: ModelVersion, tokens: TokenEncoder, texts: list[str]) -> TokenBatch:
        if sum(map(len, texts)) <= INLINE_FEATURIZE_CHARS:
            return tokenize(tokens, model.version, texts)
        return await asyncio.to_thread(tokenize, tokens, model.version, texts)
