"""The private event loop blocking callers run the asyncio clients on."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mlcycle.inference.loop import LoopRunner, LoopThread


def test_a_coroutine_runs_on_the_loop_thread_and_its_result_comes_back() -> None:
    loop = LoopThread("test-loop")
    try:

        async def where() -> str:
            await asyncio.sleep(0)
            return threading.current_thread().name

        assert loop.run(where()) == "test-loop"
    finally:
        loop.close()


def test_an_error_reaches_the_caller() -> None:
    loop = LoopThread()
    try:

        async def fails() -> None:
            raise ValueError("from the loop")

        with pytest.raises(ValueError, match="from the loop"):
            loop.run(fails())
    finally:
        loop.close()


def test_callers_on_several_threads_share_one_loop() -> None:
    loop = LoopThread()
    results: list[int] = []

    async def square(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * x

    def call(x: int) -> None:
        results.append(loop.run(square(x)))

    threads = [threading.Thread(target=call, args=(x,)) for x in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    loop.close()
    assert sorted(results) == [x * x for x in range(8)]


def test_a_closed_loop_refuses_work_and_closing_twice_is_harmless() -> None:
    loop = LoopThread()
    loop.close()
    loop.close()

    async def never() -> None:  # pragma: no cover - refused before it runs
        raise AssertionError

    with pytest.raises(RuntimeError, match="closed"):
        loop.run(never())


def test_the_loop_cannot_wait_on_itself() -> None:
    loop = LoopThread()

    async def nested() -> None:
        async def inner() -> None:
            pass

        loop.run(inner())

    try:
        with pytest.raises(RuntimeError, match="its own event loop"):
            loop.run(nested())
    finally:
        loop.close()


def test_a_runner_uses_a_loop_someone_else_runs() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="their-loop", daemon=True)
    thread.start()
    runner = LoopRunner(loop)

    async def where() -> str:
        return threading.current_thread().name

    try:
        assert runner.run(where()) == "their-loop"
        runner.close()
        with pytest.raises(RuntimeError, match="closed"):
            runner.run(where())
        assert loop.is_running()  # closing the runner leaves the loop to its owner
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_a_runner_refuses_a_loop_that_does_not_run_rather_than_hang() -> None:
    loop = asyncio.new_event_loop()
    runner = LoopRunner(loop)

    async def never() -> None:  # pragma: no cover - refused before it runs
        raise AssertionError

    try:
        with pytest.raises(RuntimeError, match="not running"):
            runner.run(never())
    finally:
        loop.close()
