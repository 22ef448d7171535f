"""The monitor's aggregate in Redis: Lua scripts sum the tallies and hand each window to one
process.

Layout (one hash slot per model version, so scripts work on a cluster),
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

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import redis

from mlcycle.contracts.monitoring import SignalState, WindowResult
from mlcycle.monitoring.aggregate import (
    LEASE_S,
    Aggregate,
    ClosedWindow,
    at,
    history_member,
    history_results,
    select,
)
from mlcycle.monitoring.tally import EXAMPLES_PER_KEY, Tally

KEY_PREFIX = "mlcycle:monitor"
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
