"""The monitor's aggregate contract: the in-process one and Redis (a real server) pass it alike."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mlcycle.common.infra.redis import EmbeddedRedis
from mlcycle.contracts.monitoring import SignalState, WindowResult
from mlcycle.monitoring.aggregate import Aggregate, ClosedWindow, LocalAggregate
from mlcycle.monitoring.redis_aggregate import RedisAggregate
from mlcycle.monitoring.tally import Tally

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0
# The window rules of most tests: 100 records, or 60 s with at least 20.
RULES = {"window_records": 100, "window_s": 60.0, "min_window_records": 20}


@pytest.fixture(params=["local", "redis"])
def make_aggregate(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[], Aggregate]]:
    """A factory of aggregates over one shared state: each call is another process's view."""
    made: list[Aggregate] = []
    if request.param == "local":
        shared = LocalAggregate()

        def factory() -> Aggregate:
            return shared
    else:
        server: EmbeddedRedis = request.getfixturevalue("redis_server")

        def factory() -> Aggregate:
            made.append(RedisAggregate(server.url))
            return made[-1]

    yield factory
    for aggregate in made:
        aggregate.close()


@pytest.fixture
def aggregate(make_aggregate: Callable[[], Aggregate]) -> Aggregate:
    return make_aggregate()


@pytest.fixture
def model() -> str:
    """A model name of this test alone (the Redis server is the session's)."""
    return f"toxicity-{uuid.uuid4().hex[:8]}"


def tally(n: int, *, bins: dict[int, float] | None = None, examples: dict | None = None) -> Tally:
    out = Tally()
    out.bump("n", n)
    for b, count in (bins or {0: n}).items():
        out.bump(f"length:{b}", count)
    for key, ids in (examples or {}).items():
        out.example(key, ids)
    return out


def result(model: str, signal: str, closed: datetime, *, alarm: bool = False) -> WindowResult:
    return WindowResult(
        model=model,
        model_version=1,
        signal=signal,
        window=100,
        statistic=0.5 if alarm else 0.01,
        threshold=0.2,
        exit_threshold=0.1,
        test="Jensen-Shannon divergence",
        alarm=alarm,
        status="alarm" if alarm else "ok",
        started_at=closed - timedelta(seconds=30),
        closed_at=closed,
    )


def state(last: WindowResult, windows: int) -> SignalState:
    return SignalState(
        model=last.model,
        model_version=last.model_version,
        signal=last.signal,
        status=last.status,
        alarm=last.alarm,
        since=last.closed_at,
        windows=windows,
        last=last,
    )


def judge(
    aggregate: Aggregate, model: str, window: ClosedWindow, *, alarm: bool = False, keep: int = 10
) -> bool:
    results = [result(model, s, window.closed_at, alarm=alarm) for s in ("score", "length")]
    states = {r.signal: state(r, window.number) for r in results}
    return aggregate.record(model, 1, window, states, results, keep=keep)


def close(aggregate: Aggregate, model: str, now: float, version: int = 1) -> ClosedWindow | None:
    return aggregate.close_if_due(model, version, now, **RULES)


# -- windows --------------------------------------------------------------------------------------


def test_a_window_closes_at_its_record_count_with_every_tally_summed(
    make_aggregate: Callable[[], Aggregate], model: str
) -> None:
    one, two = make_aggregate(), make_aggregate()
    one.add(model, 1, tally(60, bins={0: 50, 3: 10}), now=T0)
    assert close(two, model, T0 + 1) is None  # 60 < 100 records, 1 s < 60 s
    two.add(model, 1, tally(40, bins={3: 40}), now=T0 + 2)
    window = close(two, model, T0 + 3)
    assert window is not None
    assert window.number == 1
    assert window.tally.n == 100
    assert window.tally.counts == {"n": 100.0, "length:0": 50.0, "length:3": 50.0}
    assert window.started_at == datetime.fromtimestamp(T0, UTC)  # the first record's time
    assert window.closed_at == datetime.fromtimestamp(T0 + 3, UTC)
    # Taken: neither process finds it again, and the next window starts empty.
    assert close(one, model, T0 + 4) is None
    judge(one, model, window)
    one.add(model, 1, tally(100), now=T0 + 5)
    second = close(one, model, T0 + 6)
    assert second is not None
    assert (second.number, second.tally.n) == (2, 100)
    assert second.started_at == datetime.fromtimestamp(T0 + 5, UTC)


def test_a_window_closes_by_time_only_once_it_holds_the_minimum(
    aggregate: Aggregate, model: str
) -> None:
    aggregate.add(model, 1, tally(19), now=T0)
    # An hour on, 19 records are still below the minimum: nothing is claimed, it stays open.
    assert close(aggregate, model, T0 + 3600) is None
    aggregate.add(model, 1, tally(1), now=T0 + 3601)
    assert close(aggregate, model, T0 + 30) is None  # 20 records but only 30 s
    window = close(aggregate, model, T0 + 3602)
    assert window is not None
    assert window.tally.n == 20
    assert window.started_at == datetime.fromtimestamp(T0, UTC)


def test_an_empty_or_unknown_version_has_nothing_to_close(aggregate: Aggregate, model: str) -> None:
    assert close(aggregate, model, T0) is None
    aggregate.add(model, 1, Tally(), now=T0)
    assert close(aggregate, model, T0 + 3600) is None
    assert aggregate.states(model, 1) == {}
    assert aggregate.alarms(model, 1) == {}
    assert aggregate.history(model, 1) == []


def test_versions_have_their_own_windows(aggregate: Aggregate, model: str) -> None:
    aggregate.add(model, 1, tally(100), now=T0)
    aggregate.add(model, 2, tally(30), now=T0)
    assert close(aggregate, model, T0 + 1, version=2) is None
    window = close(aggregate, model, T0 + 1, version=1)
    assert window is not None and window.tally.n == 100
    other = close(aggregate, model, T0 + 61, version=2)
    assert other is not None
    assert (other.number, other.tally.n) == (1, 30)


def test_examples_keep_the_first_ids_seen_across_processes(
    make_aggregate: Callable[[], Aggregate], model: str
) -> None:
    one, two = make_aggregate(), make_aggregate()
    one.add(model, 1, tally(50, examples={"length:0": ["a"], "ngrams:5": ["x", "y"]}), now=T0)
    two.add(model, 1, tally(50, examples={"length:0": ["b", "a", "c", "d"]}), now=T0)
    one.add(model, 1, tally(1, examples={"ngrams:5": ["z", "w"], "length:0": ["e"]}), now=T0)
    window = close(one, model, T0 + 1)
    assert window is not None
    assert window.tally.examples == {"length:0": ["a", "b", "c"], "ngrams:5": ["x", "y", "z"]}


def test_fractional_counters_add_up(aggregate: Aggregate, model: str) -> None:
    first, second = tally(60), tally(40)
    first.bump("cbpe:tp", 12.25)
    second.bump("cbpe:tp", 0.5)
    aggregate.add(model, 1, first, now=T0)
    aggregate.add(model, 1, second, now=T0)
    window = close(aggregate, model, T0)
    assert window is not None
    assert window.tally.counts["cbpe:tp"] == pytest.approx(12.75)


# -- one judge at a time ------------------------------------------------------------------------


def test_the_next_window_waits_for_the_previous_ones_results(
    make_aggregate: Callable[[], Aggregate], model: str
) -> None:
    one, two = make_aggregate(), make_aggregate()
    one.add(model, 1, tally(100), now=T0)
    first = close(one, model, T0)
    assert first is not None
    two.add(model, 1, tally(150), now=T0 + 1)
    # Due, but its predecessor is being judged: judging it now would start from stale alarms.
    assert close(two, model, T0 + 2) is None
    assert judge(one, model, first, alarm=True)
    second = close(two, model, T0 + 3)
    assert second is not None
    assert (second.number, second.tally.n) == (2, 150)
    assert two.alarms(model, 1) == {"score": True, "length": True}


def test_a_judge_that_never_answers_holds_the_next_window_only_for_its_lease(
    aggregate: Aggregate, model: str
) -> None:
    aggregate.add(model, 1, tally(100), now=T0)
    assert aggregate.close_if_due(model, 1, T0, **RULES, lease_s=0.3) is not None
    aggregate.add(model, 1, tally(100), now=T0)
    assert aggregate.close_if_due(model, 1, T0 + 1, **RULES, lease_s=0.3) is None
    time.sleep(0.5)
    late = aggregate.close_if_due(model, 1, T0 + 2, **RULES, lease_s=0.3)
    assert late is not None and late.number == 2


def test_an_older_windows_results_never_overwrite_a_later_ones(
    aggregate: Aggregate, model: str
) -> None:
    aggregate.add(model, 1, tally(100), now=T0)
    first = aggregate.close_if_due(model, 1, T0, **RULES, lease_s=0.1)
    time.sleep(0.2)  # its judge stalls past the lease
    aggregate.add(model, 1, tally(100), now=T0 + 1)
    second = close(aggregate, model, T0 + 2)
    assert first is not None and second is not None
    assert judge(aggregate, model, second, alarm=True)
    assert not judge(aggregate, model, first, alarm=False)
    assert aggregate.alarms(model, 1) == {"score": True, "length": True}
    assert [r.closed_at for r in aggregate.history(model, 1)] == [second.closed_at] * 2


def test_concurrent_processes_take_each_record_exactly_once(
    make_aggregate: Callable[[], Aggregate], model: str
) -> None:
    processes = [make_aggregate() for _ in range(4)]
    taken: list[ClosedWindow] = []
    lock = threading.Lock()

    def run(aggregate: Aggregate) -> None:
        for _ in range(50):
            aggregate.add(model, 1, tally(7), now=T0)
            window = aggregate.close_if_due(
                model, 1, T0, window_records=50, window_s=60.0, min_window_records=20
            )
            if window is not None:
                judge(aggregate, model, window)
                with lock:
                    taken.append(window)

    threads = [threading.Thread(target=run, args=(p,)) for p in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    left = processes[0].close_if_due(  # whatever is left, however few
        model, 1, T0 + 3600, window_records=50, window_s=60.0, min_window_records=1
    )
    total = sum(w.tally.n for w in taken) + (left.tally.n if left is not None else 0)
    assert total == 4 * 50 * 7
    numbers = sorted(w.number for w in taken)
    assert numbers == list(range(1, len(taken) + 1))
    assert len(taken) >= 10
    assert all(w.tally.n >= 50 for w in taken)


# -- states and history -------------------------------------------------------------------------


def windows(aggregate: Aggregate, model: str, count: int, *, keep: int = 10) -> list[ClosedWindow]:
    """``count`` windows closed a minute apart, each judged (alarm in the odd ones)."""
    out = []
    for i in range(count):
        aggregate.add(model, 1, tally(100), now=T0 + 60 * i)
        window = close(aggregate, model, T0 + 60 * i + 1)
        assert window is not None
        assert judge(aggregate, model, window, alarm=bool(i % 2), keep=keep)
        out.append(window)
    return out


def test_states_are_the_latest_windows(aggregate: Aggregate, model: str) -> None:
    closed = windows(aggregate, model, 2)
    states = aggregate.states(model, 1)
    assert sorted(states) == ["length", "score"]
    assert states["score"].alarm is True
    assert states["score"].windows == 2
    assert states["score"].last is not None
    assert states["score"].last.closed_at == closed[1].closed_at


def test_history_is_oldest_first_after_since_by_signal_and_limited(
    aggregate: Aggregate, model: str
) -> None:
    closed = windows(aggregate, model, 5)
    every = aggregate.history(model, 1)
    assert [r.closed_at for r in every] == [w.closed_at for w in closed for _ in range(2)]
    assert [r.signal for r in every[:2]] == ["score", "length"]
    after = aggregate.history(model, 1, since=closed[2].closed_at)  # exclusive
    assert [r.closed_at for r in after] == [w.closed_at for w in closed[3:] for _ in range(2)]
    scores = aggregate.history(model, 1, signal="score", limit=3)
    assert [(r.signal, r.closed_at, r.alarm) for r in scores] == [
        ("score", w.closed_at, bool(i % 2)) for i, w in enumerate(closed[:3])
    ]
    assert len(aggregate.history(model, 1, limit=3)) == 3
    assert aggregate.history(model, 1, signal="oov_share") == []
    assert aggregate.history(model, 1, since=closed[-1].closed_at) == []


def test_history_keeps_the_last_windows_only(aggregate: Aggregate, model: str) -> None:
    closed = windows(aggregate, model, 6, keep=4)
    kept = aggregate.history(model, 1, signal="score")
    assert [r.closed_at for r in kept] == [w.closed_at for w in closed[2:]]
