"""The work the API's batcher queues: cache lookups and model jobs, and which jobs go next.

A :class:`Job` holds one request's distinct missing instances of one model version
(at most one batch's worth). :func:`take_batch` is the rule a batch is taken by:
answers first, one version per batch, within ``max_rows``. Off-path jobs (the
shadow's scores, production's beside a canary answer) wait until no answer's job
does, so scoring off the answers' path never holds an answer back.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlcycle.inference.versions import ModelVersion


@dataclass(eq=False)
class Lookup:
    """One request's cache keys, read in the next shared MGET."""

    keys: list[str]
    future: asyncio.Future[list[bytes | None]]


@dataclass(eq=False)
class Job:
    """Distinct missing instances of one request (at most one batch's worth), to be scored."""

    model: ModelVersion
    keys: list[str]
    texts: list[str]
    metadata: list[Any] | None
    future: asyncio.Future[np.ndarray]
    offpath: bool = False  # scored off the answers' path: taken only when no answer waits


def take_batch(queue: deque[Job], *, max_rows: int) -> list[Job]:
    """The next batch: the first queued answer's job and those behind it of the same
    version, within ``max_rows``; off-path jobs only when no answer's job waits. The
    others (another version's: a canary's) keep their order for the next batch."""
    offpath = all(job.offpath for job in queue if not job.future.done())
    jobs: list[Job] = []
    rows = 0
    others: deque[Job] = deque()
    while queue:
        job = queue.popleft()
        if job.future.done():  # its request went away
            continue
        if (
            job.offpath != offpath
            or (jobs and job.model is not jobs[0].model)
            or rows + len(job.keys) > max_rows
        ):
            others.append(job)
            continue
        jobs.append(job)
        rows += len(job.keys)
    queue.extend(others)
    return jobs


def settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Answer a lookup's or a job's waiting request, unless it went away."""
    if future.done():  # the request went away and was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
