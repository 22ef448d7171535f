"""Concurrent API requests scored together: one featurization, one MGET, one gRPC call.

Featurizing a text has a fixed cost per call (a few hundred microseconds for a
single short comment), and so has every gRPC call. Requests wait in a queue
for one of a few worker threads; a free worker takes every request queued at
that moment (up to ``predict_batch_size`` texts) and scores them in one pass.
Under load, requests that arrive while a pass runs share the next one; at low
load a request is taken at once, alone: nothing ever waits for a batch to fill.
Two workers let one featurize while the other waits for the model server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mlcycle.common.errors import MlcycleError, Unavailable
from mlcycle.inference.predictor import (
    Metadata,
    Predictor,
    check_metadata_fields,
    format_predictions,
    observe_request,
)
from mlcycle.inference.versions import ModelVersion

log = logging.getLogger(__name__)

WORKERS = 2
Result = tuple[ModelVersion, list[dict[str, Any]]]


@dataclass
class _Job:
    texts: Sequence[str]
    metadata: Metadata | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Result]
    started: float = field(default_factory=time.perf_counter)


def _settle(future: asyncio.Future[Result], result: Result | None, error: BaseException | None):
    if future.done():  # the client went away and the request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class RequestBatcher:
    """Scores API requests on worker threads, coalescing those that queue up meanwhile."""

    def __init__(self, predictor: Predictor, *, max_rows: int, workers: int = WORKERS) -> None:
        self.predictor = predictor
        self.max_rows = max_rows
        self._queue: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"predict-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> RequestBatcher:
        """Start the worker threads."""
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Finish the queued requests, then stop the workers."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=5.0)

    async def predict(self, texts: Sequence[str], metadata: Metadata | None) -> Result:
        """The serving version and one prediction per text, scored on a worker thread."""
        loop = asyncio.get_running_loop()
        job = _Job(texts, metadata, loop, loop.create_future())
        with self._ready:
            if self._stopping:
                raise Unavailable("the inference service is shutting down")
            self._queue.append(job)
            self._ready.notify()
        return await job.future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue:
                    return
                jobs = self._take()
            try:
                self._run(jobs)
            except BaseException as exc:  # never leave a request hanging
                log.exception("prediction pass failed")
                for job in jobs:
                    job.loop.call_soon_threadsafe(_settle, job.future, None, exc)

    def _take(self) -> list[_Job]:
        """The first queued job and those behind it while they fit in ``max_rows`` texts."""
        jobs = [self._queue.popleft()]
        rows = len(jobs[0].texts)
        while self._queue and rows + len(self._queue[0].texts) <= self.max_rows:
            job = self._queue.popleft()
            jobs.append(job)
            rows += len(job.texts)
        return jobs

    def _run(self, jobs: list[_Job]) -> None:
        try:
            model = self.predictor.tracker.current()
        except MlcycleError as exc:
            self._fail(jobs, exc)
            return
        valid: list[_Job] = []
        for job in jobs:
            try:
                if job.metadata is not None:
                    check_metadata_fields(model, job.metadata)
            except MlcycleError as exc:
                self._fail([job], exc)
            else:
                valid.append(job)
        if valid:
            self._score(valid)

    def _score(self, jobs: list[_Job]) -> None:
        texts = [text for job in jobs for text in job.texts]
        metadata = None
        if any(job.metadata is not None for job in jobs):
            metadata = [m for job in jobs for m in (job.metadata or [None] * len(job.texts))]
        try:
            scored = self.predictor.score(texts, metadata, unknown_fields="ignore")
        except MlcycleError as exc:
            self._fail(jobs, exc)
            return
        start = 0
        for job in jobs:
            stop = start + len(job.texts)
            predictions = format_predictions(scored.model, scored.probabilities[start:stop])
            observe_request(scored.model, predictions, "api", time.perf_counter() - job.started)
            job.loop.call_soon_threadsafe(_settle, job.future, (scored.model, predictions), None)
            start = stop

    @staticmethod
    def _fail(jobs: list[_Job], error: MlcycleError) -> None:
        for job in jobs:
            job.loop.call_soon_threadsafe(_settle, job.future, None, error)
