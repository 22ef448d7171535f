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
:class:`RedisAggregate` for every deployment with a Redis, and
:class:`LocalAggregate`, in-process, for a single process without one.

Layout in Redis (one hash slot per model version, so scripts work on a cluster),
under ``mlcycle:monitor:{<model>:<version>}:``:

- ``open:counts`` (hash: counter -> sum), ``open:examples`` (hash: key -> ids
  joined by US), ``open:started`` (the first record's time): the open window;
- ``closed`` (windows closed so far), ``judged`` (the last window whose results
  were recorded), ``judging`` (the window being judged, with a lease: the next
  one is not closed before, so windows are judged in order and each judge sees
  its predecessor's alarm states);
- ``states`` (hash: signal -> SignalState JSON), ``history`` (sorted set by
  closing time: one member per window, its WindowResults), capped.
"""

from __future__ import annotations

import abc
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis

from mlcycle.contracts.monitoring import SignalState, WindowResult
from mlcycle.monitoring.tally import EXAMPLES_PER_KEY, Tally

KEY_PREFIX = "mlcycle:monitor"
# How long a closed window may wait for its judge's results before the next one is closed
# anyway (the judge died): far more than a judgement takes (milliseconds).
LEASE_S = 30.0
# Redis is on the monitor's background thread only; past this it counts as down for a flush.
SOCKET_TIMEOUT_S = 2.0
# Windows read from the history per round trip.
HISTORY_PAGE = 200
# Separates the example ids of one key in Redis (record ids carry no control characters).
_US = "\x1f"

# KEYS: counts, examples, started. ARGV[1]: now, ARGV[2]: number of counters c,
# ARGV[3 .. 2 + 2c]: counter, amount pairs; the rest: example key, ids (US-joined) pairs.
_ADD = """
redis.call('SET', KEYS[3], ARGV[1], 'NX')
local c = tonumber(ARGV[2])
for i = 3, 2 + 2 * c, 2 do
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
end
local limit = EXAMPLES_PER_KEY
for i = 3 + 2 * c, #ARGV, 2 do
    local kept, seen = {}, {}
    local current = redis.call('HGET', KEYS[2], ARGV[i])
    if current then
        for id in string.gmatch(current, '[^\\31]+') do
            kept[#kept + 1] = id
            seen[id] = true
        end
    end
    if #kept < limit then
        for id in string.gmatch(ARGV[i + 1], '[^\\31]+') do
            if #kept >= limit then break end
            if not seen[id] then
                kept[#kept + 1] = id
                seen[id] = true
            end
        end
        redis.call('HSET', KEYS[2], ARGV[i], table.concat(kept, '\\31'))
    end
end
return 1
""".replace("EXAMPLES_PER_KEY", str(EXAMPLES_PER_KEY))

# KEYS: counts, examples, started, closed, judging.
# ARGV: now, window_records, window_s, min_window_records, lease_ms.
# Returns nil, or {window number, started, counts (flat), examples (flat)}.
_CLOSE = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local now = tonumber(ARGV[1])
if n < tonumber(ARGV[4]) then return nil end
local started = tonumber(redis.call('GET', KEYS[3]) or ARGV[1])
if n < tonumber(ARGV[2]) and now - started < tonumber(ARGV[3]) then return nil end
if redis.call('EXISTS', KEYS[5]) == 1 then return nil end
local counts = redis.call('HGETALL', KEYS[1])
local examples = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
local number = redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[5], number, 'PX', ARGV[5])
return {number, tostring(started), counts, examples}
"""

# KEYS: states, history, judging, judged.
# ARGV: window number, closed_at, windows kept, history member, then signal, state pairs.
# Records a window's results unless a later window's are there already; releases the lease.
_RECORD = """
local number = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[3]) or '-1') == number then redis.call('DEL', KEYS[3]) end
if number <= tonumber(redis.call('GET', KEYS[4]) or '0') then return 0 end
redis.call('SET', KEYS[4], number)
for i = 5, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -1 - tonumber(ARGV[3]))
return 1
"""


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


# -- Redis --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Keys:
    counts: str
    examples: str
    started: str
    closed: str
    judging: str
    judged: str
    states: str
    history: str

    @classmethod
    def of(cls, model: str, version: int) -> _Keys:
        base = f"{KEY_PREFIX}:{{{model}:{version}}}:"
        return cls(
            *(base + name for name in ("open:counts", "open:examples", "open:started")),
            *(base + name for name in ("closed", "judging", "judged", "states", "history")),
        )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _pairs(flat: Sequence[bytes | str]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


class RedisAggregate(Aggregate):
    """The aggregate in Redis, shared by every process that scores with the same models.

    Blocking (redis-py): it is used from the monitor's background thread only.
    Redis errors propagate (:class:`redis.RedisError`); the caller keeps its tally
    and tries again later.
    """

    def __init__(self, url: str, *, socket_timeout_s: float = SOCKET_TIMEOUT_S, **options: object):
        self.url = url
        self.redis = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            **options,  # type: ignore[arg-type]
        )
        self._add = self.redis.register_script(_ADD)
        self._close = self.redis.register_script(_CLOSE)
        self._record = self.redis.register_script(_RECORD)

    def add(self, model: str, version: int, tally: Tally, now: float | None = None) -> None:
        if not tally.counts:
            return
        keys = _Keys.of(model, version)
        args: list[str | float] = [repr(time.time() if now is None else now), len(tally.counts)]
        for name, amount in tally.counts.items():
            args += [name, repr(amount)]
        for key, ids in tally.examples.items():
            if ids:
                args += [key, _US.join(ids)]
        self._add(keys=[keys.counts, keys.examples, keys.started], args=args)

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
        keys = _Keys.of(model, version)
        taken = self._close(
            keys=[keys.counts, keys.examples, keys.started, keys.closed, keys.judging],
            args=[repr(now), window_records, repr(window_s), min_window_records,
                  max(1, int(lease_s * 1000))],
        )  # fmt: skip
        if taken is None:
            return None
        number, started, counts, examples = taken
        tally = Tally.from_counts(
            {name: float(value) for name, value in _pairs(counts).items()},
            {key: ids.split(_US) for key, ids in _pairs(examples).items()},
        )
        return ClosedWindow(int(number), tally, at(float(_text(started))), at(now))

    def states(self, model: str, version: int) -> dict[str, SignalState]:
        stored = self.redis.hgetall(_Keys.of(model, version).states)
        return {
            _text(signal): SignalState.model_validate_json(value)
            for signal, value in stored.items()
        }

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
        keys = _Keys.of(model, version)
        args: list[str | int] = [
            window.number,
            repr(window.closed_at.timestamp()),
            keep,
            history_member(window.number, results),
        ]
        for signal, state in states.items():
            args += [signal, state.model_dump_json()]
        done = self._record(keys=[keys.states, keys.history, keys.judging, keys.judged], args=args)
        return bool(done)

    def history(
        self,
        model: str,
        version: int,
        *,
        since: datetime | None = None,
        signal: str | None = None,
        limit: int = 1000,
    ) -> list[WindowResult]:
        key = _Keys.of(model, version).history
        low = "-inf" if since is None else f"({since.timestamp()!r}"
        out: list[WindowResult] = []
        offset = 0
        while len(out) < limit:
            # A window holds one result per signal: with a signal, one window per item.
            page = self.redis.zrangebyscore(key, low, "+inf", start=offset, num=HISTORY_PAGE)
            out += select([history_results(member) for member in page], signal, limit - len(out))
            if len(page) < HISTORY_PAGE:
                break
            offset += len(page)
        return out

    def close(self) -> None:
        self.redis.close()
