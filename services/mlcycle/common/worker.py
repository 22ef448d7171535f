"""Long jobs behind a REST API: queued by id, executed one at a time on a daemon thread.

A job's state lives in the store, not here: the worker only holds ids. A
process that dies leaves its jobs ``queued`` or ``running`` in the store, and
the next process queues them again with :func:`resume_unfinished`; each
executor makes re-execution resume rather than restart.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Protocol

from mlcycle.common.store import RUNS, Store

log = logging.getLogger(__name__)


class Runner(Protocol):
    """Anything that executes (or resumes) a stored job by id."""

    def execute(self, job_id: str) -> Any: ...


class JobWorker:
    """Executes queued job ids one at a time with ``runner.execute`` on a daemon thread."""

    def __init__(self, runner: Runner, *, name: str) -> None:
        self.runner = runner
        self.name = name
        self.active: str | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def start(self) -> JobWorker:
        self._thread.start()
        return self

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def stop(self) -> None:
        self._queue.put(None)

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
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
        if doc.get("status") in ("queued", "running")
    ]
    for job_id in sorted(unfinished):
        log.info("resuming %s %s", kind, job_id)
        worker.submit(job_id)
    return unfinished
