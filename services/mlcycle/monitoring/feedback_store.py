"""Where moderators' decisions meet the scores mlcycle gave: the join, and quality windows.

One contract, two implementations: :class:`RedisFeedbackStore` shares the join across
processes (API replicas, the stream scorer, the feedback consumer), :class:`MemoryFeedbackStore`
keeps it in one process (no Redis configured, tests). The same contract tests run on both.

- :meth:`~FeedbackStore.record_scores` keeps each served score by comment id (model, version,
  score, threshold, when) for ``retention_s``; a later score of the same id replaces it.
  Each score also adds its CBPE counters to its version's filling window (the estimate
  before labels, :mod:`mlcycle.monitoring.quality`).
- :meth:`~FeedbackStore.add_decisions` answers per decision:

  - ``"joined"``: the comment's score is there; the (score, label, threshold, lag) pair
    joins its model version's filling quality window;
  - ``"pending"``: no score yet (an unknown id, or a decision faster than its score): the
    decision waits ``retention_s`` and joins when the score is recorded;
  - ``"duplicate"``: the same reviewer already gave this comment this label; it counts once.
    A reviewer's *changed* label replaces the earlier one (in the filling window, or while
    pending); a window that has closed is never rewritten, so a change after that counts
    in the filling window.

- A version's window closes at ``window_decisions`` joined decisions; closed windows are kept
  (the latest :data:`WINDOWS_KEPT`). :meth:`~FeedbackStore.quality_windows` answers them,
  oldest first, then the filling one. A window's ``estimated`` figures are the CBPE estimate
  over the same scores its decisions were joined to, so ``estimate_error`` compares like with
  like; a window with no decision yet shows the estimate over every score recorded since it
  opened: quality before any label. ``pending`` counts decisions of every version still
  waiting for a score (without its score, a decision's version is unknown).

Only binary models' scores are recorded (a threshold is what precision and recall are at).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

import numpy as np
import redis

from mlcycle.contracts.monitoring import CalibrationBins, Decision, QualityWindow
from mlcycle.monitoring import quality
from mlcycle.monitoring.tally import Tally

log = logging.getLogger(__name__)

Outcome = Literal["joined", "pending", "duplicate"]
# model name, version -> the version's dev calibration (None: scores taken at face value).
CalibrationOf = Callable[[str, int], CalibrationBins | None]
# Closed quality windows kept per model version.
WINDOWS_KEPT = 200
KEY_PREFIX = "mlcycle:feedback:"
_SEP = "\x1f"


@dataclass(frozen=True)
class ScoreRecord:
    """A served score of a comment, joinable by its id."""

    comment_id: str
    model: str
    version: int
    score: float
    threshold: float
    scored_at: datetime


@dataclass(frozen=True)
class Pair:
    """A decision joined to its score."""

    score: float
    label: int
    threshold: float
    lag_s: float


class FeedbackStore(Protocol):
    """The join of decisions and scores (see the module docstring)."""

    def record_scores(self, records: Sequence[ScoreRecord]) -> None: ...

    def add_decisions(
        self, decisions: Sequence[Decision], reviewer: str | None = None
    ) -> list[Outcome]: ...

    def quality_windows(self, model: str, version: int) -> list[QualityWindow]: ...

    def close(self) -> None: ...


def record_score(
    store: FeedbackStore,
    comment_id: str,
    model: str,
    version: int,
    score: float,
    threshold: float,
    scored_at: datetime,
) -> None:
    """Record one served score (see :meth:`FeedbackStore.record_scores`)."""
    store.record_scores([ScoreRecord(comment_id, model, version, score, threshold, scored_at)])


def summarize(
    model: str,
    version: int,
    pairs: Sequence[Pair],
    traffic: Tally,
    *,
    started_at: datetime,
    closed_at: datetime | None,
    pending: int,
    calibration: CalibrationBins | None,
) -> QualityWindow:
    """A quality window from its joined pairs and the CBPE counters of its recorded scores."""
    realized = estimated = None
    lag: dict[str, float] = {}
    if pairs:
        scores = np.array([p.score for p in pairs], np.float64)
        labels = np.array([p.label for p in pairs], np.int64)
        thresholds = np.array([p.threshold for p in pairs], np.float64)
        realized = quality.realized(scores, labels, thresholds)
        joined = Tally()
        for threshold in np.unique(thresholds).tolist():
            chosen = scores[thresholds == threshold]
            quality.add_estimate_counters(joined, chosen, threshold, calibration)
        estimated = quality.estimate(joined)
        lag = quality.label_lag([p.lag_s for p in pairs])
    else:
        estimated = quality.estimate(traffic)
    return QualityWindow(
        model=model,
        model_version=version,
        started_at=started_at,
        closed_at=closed_at,
        estimated=estimated,
        realized=realized,
        estimate_error=quality.estimate_error(estimated, realized),
        label_lag_s=lag,
        decisions=len(pairs),
        pending=pending,
    )


def _decided_at(decision: Decision, now: float) -> float:
    return decision.decided_at.timestamp() if decision.decided_at is not None else now


def _reviewer(decision: Decision, reviewer: str | None) -> str:
    who = reviewer or decision.reviewer
    if not who:
        raise ValueError(f"decision on {decision.comment_id!r} names no reviewer")
    return who


def _no_calibration(model: str, version: int) -> CalibrationBins | None:
    return None


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# -- in one process ----------------------------------------------------------------------------


@dataclass
class _Filling:
    started: float
    pairs: dict[tuple[str, str], Pair] = field(default_factory=dict)
    traffic: Tally = field(default_factory=Tally)


class MemoryFeedbackStore:
    """The join in this process's memory; entries expire ``retention_s`` after they were set."""

    def __init__(
        self,
        *,
        retention_s: float,
        window_decisions: int,
        calibration: CalibrationOf | None = None,
        windows_kept: int = WINDOWS_KEPT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.retention_s = retention_s
        self.window_decisions = window_decisions
        self.calibration = calibration or _no_calibration
        self.windows_kept = windows_kept
        self.clock = clock
        self._lock = threading.Lock()
        self._scores: dict[str, tuple[float, ScoreRecord]] = {}
        self._pending: dict[str, dict[str, tuple[float, int, float]]] = {}
        self._decided: dict[str, dict[str, tuple[float, int]]] = {}
        self._filling: dict[tuple[str, int], _Filling] = {}
        self._closed: dict[tuple[str, int], deque[QualityWindow]] = {}
        self._next_sweep = 0.0

    def record_scores(self, records: Sequence[ScoreRecord]) -> None:
        now = self.clock()
        with self._lock:
            self._sweep(now)
            for record in records:
                self._scores[record.comment_id] = (now + self.retention_s, record)
                window = self._window(record.model, record.version, now)
                calibration = self.calibration(record.model, record.version)
                quality.add_estimate_counters(
                    window.traffic, [record.score], record.threshold, calibration
                )
                for reviewer, (expires, label, decided) in self._pending.pop(
                    record.comment_id, {}
                ).items():
                    if expires > now:
                        self._join(record, reviewer, label, decided, now)

    def add_decisions(
        self, decisions: Sequence[Decision], reviewer: str | None = None
    ) -> list[Outcome]:
        now = self.clock()
        outcomes: list[Outcome] = []
        with self._lock:
            self._sweep(now)
            for decision in decisions:
                who = _reviewer(decision, reviewer)
                cid = decision.comment_id
                decided = self._decided.setdefault(cid, {})
                previous = decided.get(who)
                if previous is not None and previous[0] > now and previous[1] == decision.label:
                    outcomes.append("duplicate")
                    continue
                decided[who] = (now + self.retention_s, decision.label)
                stored = self._scores.get(cid)
                at = _decided_at(decision, now)
                if stored is None or stored[0] <= now:
                    entry = (now + self.retention_s, decision.label, at)
                    self._pending.setdefault(cid, {})[who] = entry
                    outcomes.append("pending")
                else:
                    self._join(stored[1], who, decision.label, at, now)
                    outcomes.append("joined")
        return outcomes

    def quality_windows(self, model: str, version: int) -> list[QualityWindow]:
        now = self.clock()
        with self._lock:
            self._sweep(now)
            windows = list(self._closed.get((model, version), ()))
            filling = self._filling.get((model, version))
            if filling is not None:
                windows.append(
                    summarize(
                        model,
                        version,
                        list(filling.pairs.values()),
                        filling.traffic,
                        started_at=_utc(filling.started),
                        closed_at=None,
                        pending=self._pending_count(now),
                        calibration=self.calibration(model, version),
                    )
                )
        return windows

    def close(self) -> None:
        pass

    def _window(self, model: str, version: int, now: float) -> _Filling:
        return self._filling.setdefault((model, version), _Filling(now))

    def _join(self, score: ScoreRecord, who: str, label: int, decided: float, now: float) -> None:
        window = self._window(score.model, score.version, now)
        lag = max(0.0, decided - score.scored_at.timestamp())
        window.pairs[(score.comment_id, who)] = Pair(score.score, label, score.threshold, lag)
        if len(window.pairs) < self.window_decisions:
            return
        closed = summarize(
            score.model,
            score.version,
            list(window.pairs.values()),
            window.traffic,
            started_at=_utc(window.started),
            closed_at=_utc(now),
            pending=self._pending_count(now),
            calibration=self.calibration(score.model, score.version),
        )
        kept = self._closed.setdefault(
            (score.model, score.version), deque(maxlen=self.windows_kept)
        )
        kept.append(closed)
        self._filling[(score.model, score.version)] = _Filling(now)

    def _pending_count(self, now: float) -> int:
        return sum(1 for waiting in self._pending.values() for e in waiting.values() if e[0] > now)

    def _sweep(self, now: float) -> None:
        """Drop expired entries, at most once a tenth of the retention (bounded memory)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.retention_s / 10
        self._scores = {k: v for k, v in self._scores.items() if v[0] > now}
        for table in (self._pending, self._decided):
            for cid in list(table):
                alive = {who: e for who, e in table[cid].items() if e[0] > now}
                if alive:
                    table[cid] = alive  # type: ignore[assignment]
                else:
                    del table[cid]


# -- shared through Redis ----------------------------------------------------------------------

# Both scripts build their keys from ARGV[1], the prefix: every key of one comment, and of
# one model version's window, lives on one Redis server (not a cluster).
_LUA_COMMON = r"""
local SEP = '\31'
local function split(s)
    local out = {}
    for part in string.gmatch(s .. SEP, '([^\31]*)\31') do out[#out + 1] = part end
    return out
end
-- Join one decision to a stored score; close the version's window when it is full.
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

# ARGV: prefix, comment id, reviewer, label, decided at, retention ms, window size, now, now ms
_LUA_DECIDE = (
    _LUA_COMMON
    + r"""
local p, cid, rev, label = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl, n, now = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local dk = p .. 'd:' .. cid
if redis.call('HGET', dk, rev) == label then return {'duplicate'} end
redis.call('HSET', dk, rev, label)
redis.call('PEXPIRE', dk, ttl)
local scored = redis.call('GET', p .. 's:' .. cid)
if not scored then
    local pk = p .. 'p:' .. cid
    redis.call('HSET', pk, rev, label .. SEP .. ARGV[5])
    redis.call('PEXPIRE', pk, ttl)
    redis.call('ZADD', p .. 'pz', tonumber(ARGV[9]) + ttl, cid .. SEP .. rev)
    return {'pending'}
end
local closed = join(p, cid, rev, label, ARGV[5], scored, n, now)
if closed then return {'joined', closed[1], closed[2], closed[3], closed[4], closed[5]} end
return {'joined'}
"""
)

# ARGV: prefix, comment id, "model SEP version SEP score SEP threshold SEP scored at",
#       retention ms, window size, now, model, version, then counter names and values
_LUA_SCORE = (
    _LUA_COMMON
    + r"""
local p, cid, scored = ARGV[1], ARGV[2], ARGV[3]
local ttl, n, now = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local w = p .. 'w:' .. ARGV[7] .. ':' .. ARGV[8] .. ':'
redis.call('SET', p .. 's:' .. cid, scored, 'PX', ttl)
redis.call('HSETNX', w .. 'meta', 'started', now)
for i = 9, #ARGV, 2 do
    redis.call('HINCRBYFLOAT', w .. 'traffic', ARGV[i], ARGV[i + 1])
end
local pk = p .. 'p:' .. cid
local waiting = redis.call('HGETALL', pk)
local closes = {}
for i = 1, #waiting, 2 do
    local rev = waiting[i]
    local d = split(waiting[i + 1])
    redis.call('ZREM', p .. 'pz', cid .. SEP .. rev)
    local closed = join(p, cid, rev, d[1], d[2], scored, n, now)
    if closed then closes[#closes + 1] = closed end
end
redis.call('DEL', pk)
return closes
"""
)


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
        self.calibration = calibration or _no_calibration
        self.windows_kept = windows_kept
        self.prefix = prefix
        self._decide = client.register_script(_LUA_DECIDE)
        self._score = client.register_script(_LUA_SCORE)

    @classmethod
    def from_url(cls, url: str, **options: object) -> RedisFeedbackStore:
        """A store on the Redis at ``url`` (``options``: the rest of the constructor's)."""
        connection = options.pop("connection", None) or {}
        client = redis.Redis.from_url(url, **connection)  # type: ignore[arg-type]
        return cls(client, **options)  # type: ignore[arg-type]

    def record_scores(self, records: Sequence[ScoreRecord]) -> None:
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            scored = _SEP.join(
                (
                    record.model,
                    str(record.version),
                    repr(float(record.score)),
                    repr(float(record.threshold)),
                    repr(record.scored_at.timestamp()),
                )
            )
            counters = quality.estimate_counters(
                [record.score],
                record.threshold,
                self.calibration(record.model, record.version),
            )
            args: list[str] = [
                self.prefix,
                record.comment_id,
                scored,
                str(self.retention_ms),
                str(self.window_decisions),
                repr(now),
                record.model,
                str(record.version),
            ]
            for name, value in counters.items():
                args += [name, repr(value)]
            self._score(args=args, client=pipe)
        for closes in pipe.execute():
            for closed in closes:
                self._finish(closed)

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
                    _reviewer(decision, reviewer),
                    str(decision.label),
                    repr(_decided_at(decision, now)),
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
            if len(answer) > 1:
                self._finish(answer[1:])
        return outcomes

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
                    started_at=_utc(float(started)),
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
            started_at=_utc(float(started)),
            closed_at=_utc(float(now)),
            pending=self._pending_count(),
            calibration=self.calibration(model, version),
        )
        key = self._window_key(model, version) + "closed"
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(key, window.model_dump_json())
        pipe.ltrim(key, -self.windows_kept, -1)
        pipe.delete(moved + "pairs", moved + "traffic")
        pipe.execute()


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
