"""Token buckets: bursts, refill, per-caller isolation, bounded memory."""

from __future__ import annotations

import pytest

from mlcycle.inference.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_granted_then_refused_with_the_wait() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.25
    assert buckets.take("a") == pytest.approx(0.25)  # half a token back, not enough
    clock.now += 0.25
    assert buckets.take("a") == 0.0


def test_refill_never_exceeds_the_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=10.0, burst=2, clock=clock)
    buckets.take("a")
    clock.now += 3600
    assert [buckets.take("a") for _ in range(3)][:2] == [0.0, 0.0]
    assert buckets.take("a") > 0


def test_callers_have_their_own_buckets() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, clock=Clock())
    assert buckets.take("key-a") == 0.0
    assert buckets.take("key-a") > 0
    assert buckets.take("key-b") == 0.0


def test_full_buckets_are_dropped_when_the_table_grows() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=2, clock=clock, max_buckets=10)
    for i in range(10):
        buckets.take(f"10.0.0.{i}")
    clock.now += 2.0  # every bucket is full again
    buckets.take("10.0.1.1")
    assert len(buckets) == 1


def test_a_limit_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate=0.0, burst=1)
