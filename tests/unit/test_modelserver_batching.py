"""Server-side batching: merging, padding, splitting, limits (with an in-memory signature)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput, Unavailable
from mlcycle.modelserver.batching import QUEUE_FULL, Batcher
from mlcycle.modelserver.config import BatchOptions
from mlcycle.modelserver.servable import Servable, Signature


class RecordingSignature:
    """Doubles ``x`` and sums its rows; remembers the batch sizes it was called with."""

    key = "serving_default"
    batchable = True

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.delay_s = delay_s
        self.fail = fail
        self._lock = threading.Lock()

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = arrays["x"]
        with self._lock:
            self.calls.append(x.shape[0])
        time.sleep(self.delay_s)
        if self.fail:
            raise InvalidInput("the model rejected the inputs")
        return {"double": x * 2, "rowsum": x.reshape(x.shape[0], -1).sum(axis=1)}


class Version:
    name, version = "m", 1


VERSION = cast(Servable, Version())


def as_signature(fake: RecordingSignature) -> Signature:
    return cast(Signature, fake)


def run_concurrently(
    b: Batcher, fake: RecordingSignature, inputs: list[np.ndarray]
) -> list[dict[str, np.ndarray]]:
    with ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(lambda x: b.run(VERSION, as_signature(fake), {"x": x}), inputs))


def call(b: Batcher, fake: RecordingSignature, x: np.ndarray) -> dict[str, np.ndarray]:
    return b.run(VERSION, as_signature(fake), {"x": x})


def batcher(**options: Any) -> Batcher:
    return Batcher(BatchOptions(**{"num_batch_threads": 1, **options}))


def test_concurrent_requests_share_model_calls_and_get_their_own_rows() -> None:
    signature = RecordingSignature(delay_s=0.01)
    b = batcher(max_batch_size=16, batch_timeout_s=0.05)
    inputs = [np.full((2, 3), i, dtype=np.float32) for i in range(8)]
    results = run_concurrently(b, signature, inputs)
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(result["double"], x * 2)
        np.testing.assert_array_equal(result["rowsum"], x.sum(axis=1))
    assert sum(signature.calls) == 16
    assert len(signature.calls) < 8  # requests were merged
    assert max(signature.calls) <= 16
    b.close()


def test_variable_lengths_are_padded_with_zeros_only_when_asked() -> None:
    short, long = np.ones((1, 2), np.float32), np.ones((1, 5), np.float32)
    for pad, expected_calls in ((True, [2]), (False, [1, 1])):
        signature = RecordingSignature()
        b = batcher(max_batch_size=8, batch_timeout_s=0.2, pad_variable_length_inputs=pad)
        results = run_concurrently(b, signature, [short, long])
        assert sorted(signature.calls) == sorted(expected_calls)
        # Zero padding leaves the row sums as they were.
        assert [r["rowsum"].tolist() for r in results] == [[2.0], [5.0]]
        b.close()


def test_batches_are_padded_up_to_an_allowed_size() -> None:
    signature = RecordingSignature()
    b = batcher(max_batch_size=8, allowed_batch_sizes=(4, 8))
    result = call(b, signature, np.arange(3, dtype=np.float32).reshape(3, 1))
    assert signature.calls == [4]
    assert result["double"].ravel().tolist() == [0.0, 2.0, 4.0]
    b.close()


def test_a_request_larger_than_a_batch_runs_on_its_own() -> None:
    signature = RecordingSignature()
    b = batcher(max_batch_size=4)
    result = call(b, signature, np.ones((10, 2), np.float32))
    assert signature.calls == [10] and result["rowsum"].shape == (10,)
    b.close()


def test_a_full_queue_answers_unavailable() -> None:
    signature = RecordingSignature(delay_s=0.3)
    b = batcher(max_batch_size=1, max_enqueued_batches=1)
    x = np.ones((1, 1), np.float32)
    first = threading.Thread(target=call, args=(b, signature, x))
    first.start()
    time.sleep(0.1)  # the first request is running; one more fills the queue
    second = threading.Thread(target=call, args=(b, signature, x))
    second.start()
    time.sleep(0.05)
    with pytest.raises(Unavailable, match=QUEUE_FULL):
        call(b, signature, x)
    first.join()
    second.join()
    b.close()


def test_a_failed_batch_fails_every_request_in_it() -> None:
    signature = RecordingSignature(fail=True)
    b = batcher(max_batch_size=8, batch_timeout_s=0.05)

    def attempt(_: int) -> Exception | None:
        try:
            call(b, signature, np.ones((1, 1), np.float32))
        except InvalidInput as exc:
            return exc
        return None

    with ThreadPoolExecutor(3) as pool:
        errors = list(pool.map(attempt, range(3)))
    assert all(isinstance(e, InvalidInput) for e in errors)
    b.close()


def test_released_versions_refuse_new_work() -> None:
    signature = RecordingSignature()
    b = batcher(max_batch_size=8)
    one = np.ones((1, 1), np.float32)
    call(b, signature, one)
    queue = b._queue(VERSION, as_signature(signature))
    b.release(VERSION)
    with pytest.raises(Unavailable, match="unloaded"):
        queue.submit({"x": one}, 1)
    # A new call after release gets a fresh queue.
    assert call(b, signature, one)["rowsum"].tolist() == [1.0]
    b.close()
