"""Micro-batching on an event loop: a queue drained batch by batch by a few tasks at most.

A task starts on the loop's next turn, so its first batch holds everything queued
during this one; when a batch is done the task takes the next one, which holds
everything queued meanwhile. At low load an item is taken at once, alone:
nothing ever waits for a batch to fill.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


def take_all(queue: deque[T]) -> list[T]:
    """Everything queued, as one batch."""
    batch = list(queue)
    queue.clear()
    return batch


class Drain(Generic[T]):
    """Items queued on one event loop, run in batches by at most ``limit`` tasks at once.

    ``take`` removes the next batch from the queue (empty when nothing is left to
    run); ``run`` runs it and must not raise. While a task runs, another starts
    only once ``overlap_at`` items are queued; fewer wait for a running task to
    take them with the next batch.
    """

    def __init__(
        self,
        take: Callable[[deque[T]], list[T]],
        run: Callable[[list[T]], Awaitable[None]],
        *,
        limit: int,
        overlap_at: int = 1,
    ) -> None:
        self._take = take
        self._run = run
        self.limit = limit
        self.overlap_at = overlap_at
        self._queue: deque[T] = deque()
        self._running = 0
        self._starting = False
        self._tasks: set[asyncio.Task[None]] = set()

    def put(self, items: Iterable[T]) -> None:
        """Queue ``items``; start a task for them if none runs, or enough wait and one may."""
        self._queue.extend(items)
        if not self._queue or self._starting or self._running >= self.limit:
            return
        if self._running == 0 or len(self._queue) >= self.overlap_at:
            self._starting = True
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._drain())
            self._tasks.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(self._tasks.discard)

    async def join(self) -> None:
        """Wait until the running tasks are done."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _drain(self) -> None:
        self._starting = False
        try:
            while batch := self._take(self._queue):
                await self._run(batch)
        finally:
            self._running -= 1
