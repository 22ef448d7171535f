"""The event loop's micro-batching: what is queued in a turn is one batch, what is queued while
a batch runs is the next one, and no more batches run at once than the limit allows."""

from __future__ import annotations

import asyncio

from mlcycle.inference.drain import Drain, take_all


def test_batches_hold_what_was_queued_meanwhile_within_the_limit() -> None:
    batches: list[list[int]] = []
    running = 0
    most = 0
    release = asyncio.Event()

    async def run(batch: list[int]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        batches.append(batch)
        await release.wait()
        running -= 1

    async def scenario() -> None:
        drain: Drain[int] = Drain(take_all, run, limit=2)
        drain.put([1])
        drain.put([2, 3])  # the same turn: one batch with 1
        await asyncio.sleep(0)
        drain.put([4])  # a second task, while the first batch runs
        await asyncio.sleep(0)
        drain.put([5])
        drain.put([6])  # both running: these wait for the next free task
        await asyncio.sleep(0.01)
        release.set()
        await drain.join()

    asyncio.run(scenario())
    assert batches == [[1, 2, 3], [4], [5, 6]]
    assert most == 2


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
    batches: list[list[int]] = []
    running = 0
    most = 0
    release = asyncio.Event()

    async def run(batch: list[int]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        batches.append(batch)
        await release.wait()
        running -= 1

    async def scenario() -> None:
        drain: Drain[int] = Drain(take_all, run, limit=2, overlap_at=3)
        drain.put([1])
        await asyncio.sleep(0)  # the first batch runs, alone
        drain.put([2])
        drain.put([3])
        await asyncio.sleep(0.01)
        assert most == 1  # two waiting: not worth a batch of their own yet
        drain.put([4])  # three: a second batch starts beside the first
        await asyncio.sleep(0.01)
        release.set()
        await drain.join()

    asyncio.run(scenario())
    assert batches == [[1], [2, 3, 4]]
    assert most == 2
