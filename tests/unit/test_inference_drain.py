"""The event loop's micro-batching: what is queued in a turn is one batch, what is queued while
a batch runs is the next one, and no more batches run at once than the limit allows."""

from __future__ import annotations

import asyncio

from mlcycle.inference.drain import Drain, take_all


class HeldRuns:
    """A run that records its batch and how many run at once, and waits for ``release``."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most = 0
        self.release = asyncio.Event()

    async def __call__(self, batch: list[int]) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        self.batches.append(batch)
        await self.release.wait()
        self.running -= 1


def test_batches_hold_what_was_queued_meanwhile_within_the_limit() -> None:
    held = HeldRuns()

    async def scenario() -> None:
        drain: Drain[int] = Drain(take_all, held, limit=2)
        drain.put([1])
        drain.put([2, 3])  # the same turn: one batch with 1
        await asyncio.sleep(0)
        drain.put([4])  # a second task, while the first batch runs
        await asyncio.sleep(0)
        drain.put([5])
        drain.put([6])  # both running: these wait for the next free task
        await asyncio.sleep(0.01)
        held.release.set()
        await drain.join()

    asyncio.run(scenario())
    assert held.batches == [[1, 2, 3], [4], [5, 6]]
    assert held.most == 2


def test_a_batch_at_low_load_is_taken_at_once() -> None:
    taken: list[float] = []

    async def run(batch: list[str]) -> None:
        taken.append(asyncio.get_running_loop().time())

    async def scenario() -> float:
        drain: Drain[str] = Drain(take_all, run, limit=1)
        put_at = asyncio.get_running_loop().time()
        drain.put(["alone"])
        await drain.join()
        return put_at

    put_at = asyncio.run(scenario())
    assert taken[0] - put_at < 0.01


def test_another_batch_starts_only_once_enough_items_wait() -> None:
    held = HeldRuns()

    async def scenario() -> None:
        drain: Drain[int] = Drain(take_all, held, limit=2, overlap_at=3)
        drain.put([1])
        await asyncio.sleep(0)  # the first batch runs, alone
        drain.put([2])
        drain.put([3])
        await asyncio.sleep(0.01)
        assert held.most == 1  # two waiting: not worth a batch of their own yet
        drain.put([4])  # three: a second batch starts beside the first
        await asyncio.sleep(0.01)
        held.release.set()
        await drain.join()

    asyncio.run(scenario())
    assert held.batches == [[1], [2, 3, 4]]
    assert held.most == 2
