"""The one view across replicas: every process's tallies summed into one window per model version.

Several processes score with the same model version: the API's replicas (the
k8s HPA scales them) and the stream scorer. A window must be judged once, on
the sum of every process's records, and each signal's alarm, with its
hysteresis, is a state the processes share: a replica that enters alarm must
be the one its peers see when they judge the next window. So each process
adds its :class:`~mlcycle.monitoring.tally.Tally` (additive counters) to one
aggregate, and whichever process finds the window due takes it, atomically,
judges it, and records the signals' states and the window's results there.

Why Redis rather than Prometheus recording rules. Rules could sum each
process's exported counters, but the sum is only evaluated where Prometheus
runs: nothing in the service would see a closed window, so there would be no
event on the ``monitoring`` topic, no ``GET /v1/monitoring``, and the
thresholds, derived from a false-alarm budget per window, would have to be
re-implemented in PromQL over ``rate()``s whose windows are seconds, not
records. Hysteresis needs the previous state of the alarm, which a rule only
has through ``ALERTS`` tricks; and a replica that restarts resets its counters,
which ``increase()`` papers over only approximately. Redis is already the
service's cache, its hash increments are atomic, and a Lua script closes a
window and starts the next in one step, so with any number of replicas
exactly one of them takes each window.

Two implementations share one contract (tests run both against it):
:class:`~mlcycle.monitoring.redis_aggregate.RedisAggregate` (its layout and
scripts are there) for every deployment with a Redis, and :class:`LocalAggregate`,
in-process, for a single process without one.
"""

from __future__ import annotations

import abc
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mlcycle.contracts.monitoring import SignalState, WindowResult
from mlcycle.monitoring.tally import Tally

# How long a closed window may wait for its judge's results before the next one is closed
# anyway (the judge died): far more than a judgement takes (milliseconds).
LEASE_S = 30.0


@dataclass(frozen=True)
class ClosedWindow:
    """A window one process took from the aggregate to judge: the sum of every process's
    records from ``started_at`` (its first record) to ``closed_at``."""

    number: int
    tally: Tally
    started_at: datetime
    closed_at: datetime


def at(seconds: float) -> datetime:
    """A Unix time as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def history_member(number: int, results: Sequence[WindowResult]) -> str:
    """One window's results as stored in the history."""
    items = [result.model_dump(mode="json") for result in results]
    return json.dumps({"window": number, "results": items}, separators=(",", ":"))


def history_results(member: str | bytes) -> list[WindowResult]:
    """The results of a stored history member."""
    return [WindowResult.model_validate(item) for item in json.loads(member)["results"]]


def select(
    windows: Sequence[Sequence[WindowResult]], signal: str | None, limit: int
) -> list[WindowResult]:
    """Up to ``limit`` results of ``signal`` (or every signal) from windows, oldest first."""
    out: list[WindowResult] = []
    for results in windows:
        for result in results:
            if signal is None or result.signal == signal:
                out.append(result)
                if len(out) >= limit:
                    return out
    return out


class Aggregate(abc.ABC):
    """The shared windows, alarm states and history of every model version's signals."""

    @abc.abstractmethod
    def add(self, model: str, version: int, tally: Tally, now: float | None = None) -> None:
        """Add ``tally`` to the version's open window (started at ``now`` if it was empty)."""

    @abc.abstractmethod
    def close_if_due(
        self,
        model: str,
        version: int,
        now: float,
        *,
        window_records: int,
        window_s: float,
        min_window_records: int,
        lease_s: float = LEASE_S,
    ) -> ClosedWindow | None:
        """Take the open window if it is due, atomically; None when it is not (or is taken).

        Due: it holds ``window_records`` records, or ``window_s`` seconds passed since
        its first record and it holds at least ``min_window_records`` (below that nothing
        is claimed: it stays open). The next window is not closed until this one's
        results are recorded (:meth:`record`) or ``lease_s`` passed.
        """

    @abc.abstractmethod
    def states(self, model: str, version: int) -> dict[str, SignalState]:
        """The version's signal states, by signal (empty before its first window)."""

    def alarms(self, model: str, version: int) -> dict[str, bool]:
        """Whether each signal of the version is in alarm now (what hysteresis starts from)."""
        return {signal: state.alarm for signal, state in self.states(model, version).items()}

    @abc.abstractmethod
    def record(
        self,
        model: str,
        version: int,
        window: ClosedWindow,
        states: Mapping[str, SignalState],
        results: Sequence[WindowResult],
        *,
        keep: int,
    ) -> bool:
        """Store a judged window: its signals' new states, its results in the history (of
        which the last ``keep`` windows are kept). False, storing nothing, when a later
        window was recorded already."""

    @abc.abstractmethod
    def history(
        self,
        model: str,
        version: int,
        *,
        since: datetime | None = None,
        signal: str | None = None,
        limit: int = 1000,
    ) -> list[WindowResult]:
        """Up to ``limit`` results of windows closed after ``since``, oldest first."""

    def close(self) -> None:  # noqa: B027 - nothing to release in-process
        """Release connections."""


# -- in-process ---------------------------------------------------------------------------------


@dataclass
class _Version:
    tally: Tally = field(default_factory=Tally)
    started: float | None = None
    closed: int = 0
    judged: int = 0
    judging: tuple[int, float] | None = None  # (window, lease end on the monotonic clock)
    states: dict[str, SignalState] = field(default_factory=dict)
    history: list[tuple[float, list[WindowResult]]] = field(default_factory=list)


class LocalAggregate(Aggregate):
    """The aggregate of a single process without Redis: the same contract, under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, int], _Version] = {}

    def _of(self, model: str, version: int) -> _Version:
        return self._versions.setdefault((model, version), _Version())

    def add(self, model: str, version: int, tally: Tally, now: float | None = None) -> None:
        with self._lock:
            state = self._of(model, version)
            if state.started is None:
                state.started = time.time() if now is None else now
            state.tally.add(tally)

    def close_if_due(
        self,
        model: str,
        version: int,
        now: float,
        *,
        window_records: int,
        window_s: float,
        min_window_records: int,
        lease_s: float = LEASE_S,
    ) -> ClosedWindow | None:
        with self._lock:
            state = self._of(model, version)
            n = state.tally.n
            if n < min_window_records:
                return None
            started = now if state.started is None else state.started
            if n < window_records and now - started < window_s:
                return None
            if state.judging is not None and time.monotonic() < state.judging[1]:
                return None
            tally, state.tally, state.started = state.tally, Tally(), None
            state.closed += 1
            state.judging = (state.closed, time.monotonic() + lease_s)
            return ClosedWindow(state.closed, tally, at(started), at(now))

    def states(self, model: str, version: int) -> dict[str, SignalState]:
        with self._lock:
            return dict(self._of(model, version).states)

    def record(
        self,
        model: str,
        version: int,
        window: ClosedWindow,
        states: Mapping[str, SignalState],
        results: Sequence[WindowResult],
        *,
        keep: int,
    ) -> bool:
        with self._lock:
            state = self._of(model, version)
            if state.judging is not None and state.judging[0] == window.number:
                state.judging = None
            if window.number <= state.judged:
                return False
            state.judged = window.number
            state.states.update(states)
            state.history.append((window.closed_at.timestamp(), list(results)))
            state.history.sort(key=lambda item: item[0])
            del state.history[:-keep]
            return True

    def history(
        self,
        model: str,
        version: int,
        *,
        since: datetime | None = None,
        signal: str | None = None,
        limit: int = 1000,
    ) -> list[WindowResult]:
        after = -float("inf") if since is None else since.timestamp()
        with self._lock:
            windows = [results for closed, results in self._of(model, version).history]
            closings = [closed for closed, _ in self._of(model, version).history]
        after_since = [w for c, w in zip(closings, windows, strict=True) if c > after]
        return select(after_since, signal, limit)
