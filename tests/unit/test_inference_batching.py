"""Concurrent API requests on the event loop: one cache read and shared Predict batches for what
queued up, several batches in flight, hits never behind misses, errors kept per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput, Unavailable
from mlcycle.featurization.transform import Transform
from mlcycle.inference.batching import RequestBatcher
from tests.fixtures.inference import Rig, small_transform


@pytest.fixture(scope="module")
def transform() -> Transform:
    return small_transform()


class HeldClient:
    """Holds the first ``held`` Predict calls until released, so later requests queue up."""

    def __init__(self, rig: Rig, held: int = 1) -> None:
        self.inner = rig.client
        self.address = self.inner.address
        self.held = held
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        rig.predictor.client = self  # type: ignore[assignment]

    def aio(self) -> HeldClient:
        return self

    async def predict(self, *args: Any) -> np.ndarray:
        if self.held > 0:
            self.held -= 1
            self.entered.set()
            await self.release.wait()
        return self.inner.predict(*args)

    async def close(self) -> None:
        pass


def batcher_of(rig: Rig, **options: Any) -> RequestBatcher:
    return RequestBatcher(
        rig.predictor, max_rows=rig.settings.inference.predict_batch_size, **options
    )


async def run_all(batcher: RequestBatcher, held: HeldClient, requests: list) -> list:
    """The first request held in the model server, the others sent meanwhile, then released."""
    first = asyncio.create_task(batcher.predict(*requests[0]))
    await asyncio.wait_for(held.entered.wait(), 5)
    rest = [asyncio.create_task(batcher.predict(*r)) for r in requests[1:]]
    await asyncio.sleep(0.05)
    held.release.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    await batcher.close()
    return results


def queued_jobs(batcher: RequestBatcher) -> int:
    """Jobs waiting for a Predict batch (in the batcher's batch drain, cancelled ones included)."""
    return len(batcher._batches._queue)


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Let the loop run until ``condition`` holds; fail after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.001)


def rows_per_call(rig: Rig) -> list[int]:
    return [rows for _, (rows, _) in rig.client.calls]


def test_requests_queued_during_a_batch_share_the_next_one(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, predict_batch_size=64)
    held = HeldClient(rig)
    requests = [([f"text number {i}"], None) for i in range(6)]
    results = asyncio.run(run_all(batcher_of(rig, in_flight=1), held, requests))
    assert rows_per_call(rig) == [1, 5]
    rig.cache.data.clear()
    rig.predictor.client = rig.client
    for (texts, _), (model, predictions) in zip(requests, results, strict=True):
        assert model.version == 1 and len(predictions) == 1
        _, alone = rig.predictor.predict(texts)  # the same answer as scored on its own
        assert predictions == alone


def test_several_batches_are_in_flight_at_once(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform, predict_batch_size=64)
    held = HeldClient(rig)
    batcher = batcher_of(rig, in_flight=2, overlap_at=1)

    async def scenario() -> tuple[bool, list]:
        first = asyncio.create_task(batcher.predict(["held in the model server"], None))
        await asyncio.wait_for(held.entered.wait(), 5)
        second = await asyncio.wait_for(batcher.predict(["scored meanwhile"], None), 5)
        done_before_release = not first.done()
        held.release.set()
        answers = [await first, second]
        await batcher.close()
        return done_before_release, answers

    overlapped, answers = asyncio.run(scenario())
    assert overlapped
    assert [model.version for model, _ in answers] == [1, 1]
    assert rows_per_call(rig) == [1, 1]


def test_cache_hits_never_wait_behind_misses(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform)
    _, cached = rig.predictor.predict(["already scored"])
    held = HeldClient(rig)
    batcher = batcher_of(rig, in_flight=1)

    async def scenario() -> list:
        miss = asyncio.create_task(batcher.predict(["not scored yet"], None))
        await asyncio.wait_for(held.entered.wait(), 5)
        _, hit = await asyncio.wait_for(batcher.predict(["already scored"], None), 5)
        assert not miss.done()
        held.release.set()
        await miss
        await batcher.close()
        return hit

    assert asyncio.run(scenario()) == cached


def test_concurrent_requests_share_one_cache_read_and_a_text_is_scored_once(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, predict_batch_size=64)
    batcher = batcher_of(rig)

    async def scenario() -> list:
        texts = ["you idiot", "thanks", "you  idiot ", "great edit"]
        results = await asyncio.gather(*(batcher.predict([t], None) for t in texts))
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert rig.cache.gets == 1
    assert rows_per_call(rig) == [3]  # the two spellings of "you idiot" are one text
    assert results[0][1] == results[2][1]
    assert len(rig.cache.data) == 3


def test_a_bad_request_fails_alone(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform)
    held = HeldClient(rig)
    requests = [
        (["first"], None),
        (["good"], [{"year": 2010}]),
        (["bad"], [{"shoe_size": 44}]),
        (["also good"], None),
    ]
    results = asyncio.run(run_all(batcher_of(rig), held, requests))
    assert isinstance(results[2], InvalidInput) and "shoe_size" in results[2].message
    assert [r[1][0]["model_version"] for i, r in enumerate(results) if i != 2] == [1, 1, 1]


def test_a_batch_never_exceeds_the_batch_size(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform, predict_batch_size=4)
    held = HeldClient(rig)
    requests = [([f"a{i}", f"b{i}", f"c{i}"], None) for i in range(3)]
    asyncio.run(run_all(batcher_of(rig, in_flight=1), held, requests))
    assert rows_per_call(rig) == [3, 3, 3]


def test_a_large_request_is_split_into_batches_and_kept_in_order(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, predict_batch_size=4)
    texts = [f"comment number {i}" for i in range(10)]
    batcher = batcher_of(rig)

    async def scenario() -> list:
        _, predictions = await batcher.predict(texts, None)
        await batcher.close()
        return predictions

    predictions = asyncio.run(scenario())
    assert sorted(rows_per_call(rig)) == [2, 4, 4]
    expected = rig.expected(texts, 1)[:, 1]
    assert np.allclose([p["score"] for p in predictions], expected, atol=1e-6)


def test_an_outage_fails_every_request_of_the_batch(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform)
    rig.client.down = True
    batcher = batcher_of(rig)

    async def both() -> list:
        results = await asyncio.gather(
            batcher.predict(["a"], None), batcher.predict(["b"], None), return_exceptions=True
        )
        await batcher.close()
        return results

    results = asyncio.run(both())
    assert all(isinstance(r, Unavailable) and "model server" in r.message for r in results)


def test_a_vanished_version_is_refreshed_and_the_request_scored_again(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    rig.add_version(2)
    rig.client.available = [2]  # version 1 unloaded; the tracker has not noticed yet
    batcher = batcher_of(rig)

    async def scenario() -> Any:
        result = await batcher.predict(["thanks"], None)
        await batcher.close()
        return result

    model, predictions = asyncio.run(scenario())
    assert model.version == 2 and predictions[0]["model_version"] == 2
    assert [version for version, _ in rig.client.calls] == [2]


def test_a_closed_batcher_refuses_new_requests(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform)
    batcher = batcher_of(rig)

    async def scenario() -> None:
        await batcher.close()
        await batcher.predict(["late"], None)

    with pytest.raises(Unavailable, match="shutting down"):
        asyncio.run(scenario())


def test_a_request_that_went_away_is_not_scored(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform, predict_batch_size=64)
    held = HeldClient(rig)
    batcher = batcher_of(rig, in_flight=1)

    async def scenario() -> Any:
        first = asyncio.create_task(batcher.predict(["held in the model server"], None))
        await asyncio.wait_for(held.entered.wait(), 5)
        gone = asyncio.create_task(batcher.predict(["its client went away"], None))
        await until(lambda: queued_jobs(batcher) == 1)  # queued behind the held batch
        gone.cancel()
        last = asyncio.create_task(batcher.predict(["still wanted"], None))
        await until(lambda: queued_jobs(batcher) == 2)  # the cancelled job is still in the queue
        held.release.set()
        await first
        result = await last
        await batcher.close()
        return result

    model, predictions = asyncio.run(scenario())
    assert model.version == 1 and len(predictions) == 1
    assert rows_per_call(rig) == [1, 1]


def test_readiness_asks_the_channel_predictions_use(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform)
    batcher = batcher_of(rig)

    async def scenario() -> list[bool]:
        before_any_call = await asyncio.to_thread(batcher.model_server_reachable)
        await batcher.predict(["thanks"], None)
        up = await asyncio.to_thread(batcher.model_server_reachable)
        rig.client.down = True
        down = await asyncio.to_thread(batcher.model_server_reachable)
        await batcher.close()
        return [before_any_call, up, down]

    assert asyncio.run(scenario()) == [True, True, False]


class Observed:
    """A monitor that only counts the texts it is shown."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def observe(self, model: Any, texts: list[str], *rest: Any) -> None:
        self.texts.extend(texts)


def test_a_look_that_is_not_live_traffic_is_scored_but_not_monitored(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform)
    monitor = Observed()
    rig.predictor.monitor = monitor  # type: ignore[assignment]
    batcher = batcher_of(rig)

    async def scenario() -> tuple:
        looked = await batcher.predict(["a reviewer's look"], None, live=False)
        served = await batcher.predict(["a served comment"], None)
        await batcher.close()
        return looked, served

    looked, served = asyncio.run(scenario())
    assert looked[1][0]["score"] == rig.expected(["a reviewer's look"], 1)[0, 1]
    assert served[1]
    assert monitor.texts == ["a served comment"]
