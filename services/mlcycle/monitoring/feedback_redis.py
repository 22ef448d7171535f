"""The feedback join in Redis: one store shared by every process of a deployment.

See :mod:`mlcycle.monitoring.feedback_store` for the contract: the join is keyed by
(comment id, model, version). Keys, under the prefix (``mlcycle:feedback:``):

- ``sv:<comment>``: the comment's served scores, one field per ``model SEP version``
  (a re-score by the same version replaces its field); it expires ``retention_s`` after
  the comment's latest score;
- ``dv:<comment>``: each reviewer's last decision (its label, for duplicates, and when),
  and, per version whose score has joined it, a mark ``RS model SEP version SEP reviewer``
  -> the label joined (RS, SEP: ASCII 30 and 31, never in a reviewer's name), so a
  version's score joins a decision once; it expires ``retention_s`` after the comment's
  latest decision, marks with it;
- ``pz``: the decisions no version's score has joined yet, by expiry (their count);
- per model version ``w:<model>:<version>:`` + ``pairs`` (the filling window's joined
  decisions), ``traffic`` (its scores' CBPE counters), ``meta`` (when it opened, windows
  closed) and ``closed`` (the closed windows, as JSON).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import redis

from mlcycle.common.errors import Unavailable
from mlcycle.contracts.monitoring import Decision, QualityWindow
from mlcycle.monitoring import quality
from mlcycle.monitoring.feedback_store import (
    WINDOWS_KEPT,
    CalibrationOf,
    Outcome,
    Pair,
    ScoreRecord,
    decided_at,
    no_calibration,
    summarize,
    utc,
    who_decided,
)
from mlcycle.monitoring.tally import Tally

log = logging.getLogger(__name__)

KEY_PREFIX = "mlcycle:feedback:"
# Past this a Redis call fails (503 for a request, a retried batch for a consumer) rather
# than hold a thread.
SOCKET_TIMEOUT_S = 2.0
# Scores per script call: about 9 µs of Redis each, so a call holds the server ~0.3 ms.
SCRIPT_RECORDS = 32
_SEP = "\x1f"
F = TypeVar("F", bound=Callable[..., Any])


# Both scripts build their keys from ARGV[1], the prefix: every key of one comment, and of
# one model version's window, lives on one Redis server (not a cluster).
_LUA_COMMON = r"""
local SEP = '\31'
local MARK = '\30'
local function split(s)
    local out = {}
    for part in string.gmatch(s .. SEP, '([^\31]*)\31') do out[#out + 1] = part end
    return out
end
-- Join one decision to one version's stored score; close the version's window when it is
-- full.
local function join(p, cid, rev, label, decided, scored, n, now)
    local s = split(scored)
    local model, version, score, threshold, at = s[1], s[2], s[3], s[4], tonumber(s[5])
    local lag = tonumber(decided) - at
    if lag < 0 then lag = 0 end
    local w = p .. 'w:' .. model .. ':' .. version .. ':'
    redis.call('HSETNX', w .. 'meta', 'started', now)
    redis.call('HSET', w .. 'pairs', cid .. SEP .. rev,
               score .. SEP .. label .. SEP .. threshold .. SEP .. lag)
    if redis.call('HLEN', w .. 'pairs') < n then return false end
    local seq = redis.call('HINCRBY', w .. 'meta', 'seq', 1)
    local started = redis.call('HGET', w .. 'meta', 'started')
    local c = p .. 'closing:' .. model .. ':' .. version .. ':' .. seq .. ':'
    redis.call('RENAME', w .. 'pairs', c .. 'pairs')
    redis.call('PEXPIRE', c .. 'pairs', 3600000)
    if redis.call('EXISTS', w .. 'traffic') == 1 then
        redis.call('RENAME', w .. 'traffic', c .. 'traffic')
        redis.call('PEXPIRE', c .. 'traffic', 3600000)
    end
    redis.call('HSET', w .. 'meta', 'started', now)
    return {model, version, tostring(seq), started, now}
end
"""

# A decision joins the score of every version that scored its comment (each into its own
# version's window), else waits. The windows it closes follow the outcome, 5 fields each.
# ARGV: prefix, comment id, reviewer, label, decided at, retention ms, window size, now, now ms
_LUA_DECIDE = (
    _LUA_COMMON
    + r"""
local p, cid, rev, label, decided = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ttl, n, now = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local dk = p .. 'dv:' .. cid
local before = redis.call('HGET', dk, rev)
if before and split(before)[1] == label then return {'duplicate'} end
redis.call('HSET', dk, rev, label .. SEP .. decided)
redis.call('PEXPIRE', dk, ttl)
local scores = redis.call('HGETALL', p .. 'sv:' .. cid)
if #scores == 0 then
    redis.call('ZADD', p .. 'pz', tonumber(ARGV[9]) + ttl, cid .. SEP .. rev)
    return {'pending'}
end
local out = {'joined'}
for i = 1, #scores, 2 do
    redis.call('HSET', dk, MARK .. scores[i] .. SEP .. rev, label)
    local closed = join(p, cid, rev, label, decided, scores[i + 1], n, now)
    if closed then for _, part in ipairs(closed) do out[#out + 1] = part end end
end
redis.call('ZREM', p .. 'pz', cid .. SEP .. rev)
return out
"""
)

# A batch of scores in one call. ARGV: prefix, retention ms, window size, now, R, then R
# times (comment id, "model SEP version SEP score SEP threshold SEP scored at"), then per
# model version of the batch: model, version, k, and k CBPE counter names and values.
# Each score joins the comment's decisions its version has not joined at their label yet.
_LUA_SCORE = (
    _LUA_COMMON
    + r"""
local p, ttl, n, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local records = tonumber(ARGV[5])
local closes = {}
for r = 0, records - 1 do
    local cid, scored = ARGV[6 + 2 * r], ARGV[7 + 2 * r]
    -- Its field: the score's first two parts, model SEP version (found, not split: cheaper).
    local two = string.find(scored, SEP, string.find(scored, SEP, 1, true) + 1, true)
    local version = string.sub(scored, 1, two - 1)
    local sk = p .. 'sv:' .. cid
    redis.call('HSET', sk, version, scored)
    redis.call('PEXPIRE', sk, ttl)
    local dk = p .. 'dv:' .. cid
    local decided = redis.call('HGETALL', dk)
    for i = 1, #decided, 2 do
        local rev = decided[i]
        if string.byte(rev, 1) ~= 30 then
            local d = split(decided[i + 1])
            local m = MARK .. version .. SEP .. rev
            if redis.call('HGET', dk, m) ~= d[1] then
                redis.call('HSET', dk, m, d[1])
                redis.call('ZREM', p .. 'pz', cid .. SEP .. rev)
                local closed = join(p, cid, rev, d[1], d[2], scored, n, now)
                if closed then closes[#closes + 1] = closed end
            end
        end
    end
end
local i = 6 + 2 * records
while i <= #ARGV do
    local w = p .. 'w:' .. ARGV[i] .. ':' .. ARGV[i + 1] .. ':'
    redis.call('HSETNX', w .. 'meta', 'started', now)
    local k = tonumber(ARGV[i + 2])
    for j = 0, k - 1 do
        redis.call('HINCRBYFLOAT', w .. 'traffic', ARGV[i + 3 + 2 * j], ARGV[i + 4 + 2 * j])
    end
    i = i + 3 + 2 * k
end
return closes
"""
)


def _unavailable_on_redis_errors(method: F) -> F:
    """Redis errors as :class:`Unavailable` (503, or a batch the consumer loop retries)."""

    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise Unavailable(f"the feedback store's Redis is unavailable: {exc}") from exc

    return wrapped  # type: ignore[return-value]


class RedisFeedbackStore:
    """The join in Redis, shared by every process of one deployment.

    Each score and each decision is one Lua script, so two processes recording and deciding
    at once cannot lose or double an entry, and exactly one of them closes a full window: the
    script moves the window's pairs and counters aside atomically; that process then
    summarizes them and appends the closed window. (Were it to die in between, the moved
    keys expire after an hour and that one window is lost; nothing else is.)
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        retention_s: float,
        window_decisions: int,
        calibration: CalibrationOf | None = None,
        windows_kept: int = WINDOWS_KEPT,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self.redis = client
        self.retention_ms = max(1, int(retention_s * 1000))
        self.window_decisions = window_decisions
        self.calibration = calibration or no_calibration
        self.windows_kept = windows_kept
        self.prefix = prefix
        self._decide = client.register_script(_LUA_DECIDE)
        self._score = client.register_script(_LUA_SCORE)

    @classmethod
    def from_url(cls, url: str, **options: object) -> RedisFeedbackStore:
        """A store on the Redis at ``url`` (``options``: the rest of the constructor's)."""
        connection = options.pop("connection", None) or {}
        client = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            **connection,  # type: ignore[arg-type]
        )
        return cls(client, **options)  # type: ignore[arg-type]

    def record_score(
        self,
        comment_id: str,
        model: str,
        version: int,
        score: float,
        threshold: float,
        scored_at: datetime,
    ) -> None:
        """Record one served score (see :meth:`record_scores`)."""
        self.record_scores([ScoreRecord(comment_id, model, version, score, threshold, scored_at)])

    @_unavailable_on_redis_errors
    def record_scores(self, records: Sequence[ScoreRecord]) -> None:
        """A few script calls for the batch, in one round trip: the scores and the joins they
        complete, then the batch's CBPE counters per version, computed at once. Calls are
        small because a script holds Redis meanwhile, and the score cache's reads on the
        answer's path share the server."""
        if not records:
            return
        now = repr(time.time())
        head: list[str | int] = [self.prefix, self.retention_ms, self.window_decisions, now]
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(records), SCRIPT_RECORDS):
            chunk = records[start : start + SCRIPT_RECORDS]
            args = [*head, len(chunk)]
            for record in chunk:
                args += [record.comment_id, _scored(record)]
            self._score(args=args, client=pipe)
        counters = [*head, 0]
        for (model, version), tally in self._estimate_counters(records).items():
            counters += [model, version, len(tally.counts)]
            for name, value in tally.counts.items():
                counters += [name, repr(value)]
        self._score(args=counters, client=pipe)
        for closes in pipe.execute():
            for closed in closes:
                self._finish(closed)

    def _estimate_counters(self, records: Sequence[ScoreRecord]) -> dict[tuple[str, int], Tally]:
        groups: dict[tuple[str, int, float], list[float]] = {}
        for record in records:
            key = (record.model, record.version, float(record.threshold))
            groups.setdefault(key, []).append(float(record.score))
        tallies: dict[tuple[str, int], Tally] = {}
        for (model, version, threshold), scores in groups.items():
            tally = tallies.setdefault((model, version), Tally())
            calibration = self.calibration(model, version)
            quality.add_estimate_counters(tally, scores, threshold, calibration)
        return tallies

    @_unavailable_on_redis_errors
    def add_decisions(
        self, decisions: Sequence[Decision], reviewer: str | None = None
    ) -> list[Outcome]:
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for decision in decisions:
            self._decide(
                args=[
                    self.prefix,
                    decision.comment_id,
                    who_decided(decision, reviewer),
                    str(decision.label),
                    repr(decided_at(decision, now)),
                    str(self.retention_ms),
                    str(self.window_decisions),
                    repr(now),
                    str(int(now * 1000)),
                ],
                client=pipe,
            )
        outcomes: list[Outcome] = []
        for answer in pipe.execute():
            outcomes.append(_text(answer[0]))  # type: ignore[arg-type]
            for start in range(1, len(answer), 5):  # the windows it closed, 5 fields each
                self._finish(answer[start : start + 5])
        return outcomes

    @_unavailable_on_redis_errors
    def quality_windows(self, model: str, version: int) -> list[QualityWindow]:
        w = self._window_key(model, version)
        pipe = self.redis.pipeline(transaction=True)
        pipe.lrange(w + "closed", 0, -1)
        pipe.hgetall(w + "pairs")
        pipe.hgetall(w + "traffic")
        pipe.hget(w + "meta", "started")
        closed, pairs, traffic, started = pipe.execute()
        windows = [QualityWindow.model_validate_json(raw) for raw in closed]
        windows.sort(key=lambda window: window.started_at)
        if started is not None:
            windows.append(
                summarize(
                    model,
                    version,
                    _pairs(pairs),
                    _tally(traffic),
                    started_at=utc(float(started)),
                    closed_at=None,
                    pending=self._pending_count(),
                    calibration=self.calibration(model, version),
                )
            )
        return windows

    def close(self) -> None:
        self.redis.close()

    def _window_key(self, model: str, version: int) -> str:
        return f"{self.prefix}w:{model}:{version}:"

    def _pending_count(self) -> int:
        key = self.prefix + "pz"
        pipe = self.redis.pipeline(transaction=True)
        pipe.zremrangebyscore(key, "-inf", int(time.time() * 1000))
        pipe.zcard(key)
        return int(pipe.execute()[1])

    def _finish(self, closed: Iterable[bytes | str]) -> None:
        """Summarize a window a script moved aside, and keep it with the closed ones."""
        model, version_text, seq, started, now = (_text(part) for part in closed)
        version = int(version_text)
        moved = f"{self.prefix}closing:{model}:{version}:{seq}:"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(moved + "pairs")
        pipe.hgetall(moved + "traffic")
        pairs, traffic = pipe.execute()
        window = summarize(
            model,
            version,
            _pairs(pairs),
            _tally(traffic),
            started_at=utc(float(started)),
            closed_at=utc(float(now)),
            pending=self._pending_count(),
            calibration=self.calibration(model, version),
        )
        key = self._window_key(model, version) + "closed"
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(key, window.model_dump_json())
        pipe.ltrim(key, -self.windows_kept, -1)
        pipe.delete(moved + "pairs", moved + "traffic")
        pipe.execute()


def _scored(record: ScoreRecord) -> str:
    """A score as stored: model, version, score, threshold, when (epoch seconds)."""
    return _SEP.join(
        (
            record.model,
            str(record.version),
            repr(float(record.score)),
            repr(float(record.threshold)),
            repr(record.scored_at.timestamp()),
        )
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(stored: dict[bytes, bytes]) -> list[Pair]:
    pairs = []
    for value in stored.values():
        score, label, threshold, lag = _text(value).split(_SEP)
        pairs.append(Pair(float(score), int(label), float(threshold), float(lag)))
    return pairs


def _tally(stored: dict[bytes, bytes]) -> Tally:
    return Tally.from_counts({_text(k): float(v) for k, v in stored.items()})
