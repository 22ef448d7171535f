"""Concurrent requests scored together: one pass for what queued up, errors kept per request."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from mlcycle.common.errors import InvalidInput, Unavailable
from mlcycle.featurizer.transform import Transform
from mlcycle.inference.batching import RequestBatcher
from tests.fixtures.inference import Rig, small_transform


@pytest.fixture(scope="module")
def transform() -> Transform:
    return small_transform()


class HeldClient:
    """Blocks the first Predict until released, so that later requests queue up meanwhile."""

    def __init__(self, rig: Rig) -> None:
        self.inner = rig.client
        self.release = threading.Event()
        self.entered = threading.Event()
        rig.predictor.client = self  # type: ignore[assignment]
        self.address = self.inner.address

    def predict(self, *args: object):
        self.entered.set()
        self.release.wait(5)
        return self.inner.predict(*args)


async def run_all(batcher: RequestBatcher, held: HeldClient, requests: list) -> list:
    first = asyncio.create_task(batcher.predict(*requests[0]))
    await asyncio.to_thread(held.entered.wait, 5)  # the worker is busy with the first one
    rest = [asyncio.create_task(batcher.predict(*r)) for r in requests[1:]]
    await asyncio.sleep(0.05)
    held.release.set()
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_requests_queued_during_a_pass_share_the_next_one(
    tmp_path: Path, transform: Transform
) -> None:
    rig = Rig(tmp_path, transform, predict_batch_size=64)
    held = HeldClient(rig)
    batcher = RequestBatcher(rig.predictor, max_rows=64, workers=1).start()
    try:
        requests = [([f"text number {i}"], None) for i in range(6)]
        results = asyncio.run(run_all(batcher, held, requests))
    finally:
        batcher.stop()
    assert [rows for _, (rows, _) in rig.client.calls] == [1, 5]
    rig.cache.data.clear()
    for (texts, _), (model, predictions) in zip(requests, results, strict=True):
        assert model.version == 1 and len(predictions) == 1
        _, alone = rig.predictor.predict(texts)  # the same answer as scored on its own
        assert predictions == alone


def test_a_bad_request_fails_alone(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform)
    held = HeldClient(rig)
    batcher = RequestBatcher(rig.predictor, max_rows=64, workers=1).start()
    try:
        requests = [
            (["first"], None),
            (["good"], [{"year": 2010}]),
            (["bad"], [{"shoe_size": 44}]),
            (["also good"], None),
        ]
        results = asyncio.run(run_all(batcher, held, requests))
    finally:
        batcher.stop()
    assert isinstance(results[2], InvalidInput) and "shoe_size" in results[2].message
    assert [r[1][0]["model_version"] for i, r in enumerate(results) if i != 2] == [1, 1, 1]


def test_a_pass_never_exceeds_the_batch_size(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform, predict_batch_size=4)
    held = HeldClient(rig)
    batcher = RequestBatcher(rig.predictor, max_rows=4, workers=1).start()
    try:
        requests = [([f"a{i}", f"b{i}", f"c{i}"], None) for i in range(3)]
        asyncio.run(run_all(batcher, held, requests))
    finally:
        batcher.stop()
    assert [rows for _, (rows, _) in rig.client.calls] == [3, 3, 3]


def test_an_outage_fails_every_request_of_the_pass(tmp_path: Path, transform: Transform) -> None:
    rig = Rig(tmp_path, transform)
    rig.client.down = True
    batcher = RequestBatcher(rig.predictor, max_rows=64).start()

    async def both() -> list:
        return await asyncio.gather(
            batcher.predict(["a"], None), batcher.predict(["b"], None), return_exceptions=True
        )

    try:
        results = asyncio.run(both())
    finally:
        batcher.stop()
    assert all(isinstance(r, Unavailable) and "model server" in r.message for r in results)
