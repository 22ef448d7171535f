"""Long jobs behind a REST API: queued by id, executed one at a time on a daemon thread.

A job's state lives in the store, not here: the worker only holds ids. A
process that dies leaves its jobs ``queued`` or ``running`` in the store, and
the next process queues them again with :func:`resume_unfinished`; each
executor makes re-execution resume rather than restart.

The queue of new jobs is bounded (``max_queued``): a job is created only when
there is room for it, and otherwise the caller gets :class:`QueueFull` (429,
with Retry-After) and no record is written. Jobs resumed at start-up were
accepted before and are queued whatever the bound.

:meth:`JobWorker.shutdown` stops taking work: the worker sets ``stopping`` (an
executor that watches it stops its job at the next checkpoint), starts no
other queued job, and waits for the running one to return.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from mlcycle.common.errors import QueueFull
from mlcycle.common.store import RUNS, Store

log = logging.getLogger(__name__)

# What a client is told to wait, per job ahead of it, before it asks again.
RETRY_AFTER_PER_JOB_S = 30


class Runner(Protocol):
    """Anything that executes (or resumes) a stored job by id."""

    def execute(self, job_id: str) -> Any: ...


class HasId(Protocol):
    """A job record: whatever ``create`` returns, known by its id."""

    @property
    def id(self) -> str: ...


Record = TypeVar("Record", bound=HasId)


class JobWorker:
    """Executes queued job ids one at a time with ``runner.execute`` on a daemon thread."""

    def __init__(
        self,
        runner: Runner,
        *,
        name: str,
        max_queued: int | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.runner = runner
        self.name = name
        self.max_queued = max_queued
        self.active: str | None = None
        self.stopping = stopping or threading.Event()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._admit = threading.Lock()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def start(self) -> JobWorker:
        self._thread.start()
        return self

    @property
    def waiting(self) -> int:
        """How many jobs are queued behind the running one."""
        return self._queue.qsize()

    def accept(self, create: Callable[[], Record]) -> Record:
        """Create a job with ``create`` and queue it, if the queue has room; else QueueFull."""
        with self._admit:
            waiting = self.waiting
            if self.max_queued is not None and waiting >= self.max_queued:
                raise QueueFull(
                    f"{self.name}: {waiting} jobs are already waiting (the most allowed, "
                    "MLCYCLE_MAX_QUEUED_JOBS); retry once one has started",
                    retry_after_s=RETRY_AFTER_PER_JOB_S,
                    details={"waiting": waiting, "max_queued": self.max_queued},
                )
            record = create()
            self.submit(record.id)
            return record

    def submit(self, job_id: str) -> None:
        """Queue ``job_id`` whatever the bound (a job accepted earlier, resumed)."""
        self._queue.put(job_id)

    def stop(self) -> None:
        self._queue.put(None)

    def shutdown(self, grace_s: float) -> bool:
        """Stop taking work and wait up to ``grace_s`` for the running job; True when it ended."""
        self.stopping.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(grace_s)
        return not self._thread.is_alive()

    def _work(self) -> None:
        while not self.stopping.is_set():
            job_id = self._queue.get()
            if job_id is None or self.stopping.is_set():
                return
            self.active = job_id
            try:
                self.runner.execute(job_id)
            except Exception:  # executors record failures on the job itself
                log.exception("%s: job %s failed", self.name, job_id)
            finally:
                self.active = None


def resume_unfinished(store: Store, worker: JobWorker, kind: str) -> list[str]:
    """Queue the ``kind`` records a previous process left queued or running; returns their ids."""
    unfinished = [
        doc["id"]
        for doc in store.scan(RUNS, filters={"kind": kind})
        if doc.get("status") in ("queued", "running", "interrupted")
    ]
    for job_id in sorted(unfinished):
        log.info("resuming %s %s", kind, job_id)
        worker.submit(job_id)
    return unfinished
