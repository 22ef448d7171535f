"""Where moderators' decisions meet the scores mlcycle gave: the join, and quality windows.

One contract, two implementations:
:class:`~mlcycle.monitoring.feedback_redis.RedisFeedbackStore` shares the join across
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

import numpy as np

from mlcycle.contracts.monitoring import CalibrationBins, Decision, QualityWindow
from mlcycle.monitoring import quality
from mlcycle.monitoring.tally import Tally

log = logging.getLogger(__name__)

Outcome = Literal["joined", "pending", "duplicate"]
# model name, version -> the version's dev calibration (None: scores taken at face value).
CalibrationOf = Callable[[str, int], CalibrationBins | None]
# Closed quality windows kept per model version.
WINDOWS_KEPT = 200


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

    def record_score(
        self,
        comment_id: str,
        model: str,
        version: int,
        score: float,
        threshold: float,
        scored_at: datetime,
    ) -> None: ...

    def add_decisions(
        self, decisions: Sequence[Decision], reviewer: str | None = None
    ) -> list[Outcome]: ...

    def quality_windows(self, model: str, version: int) -> list[QualityWindow]: ...

    def close(self) -> None: ...


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


def decided_at(decision: Decision, now: float) -> float:
    return decision.decided_at.timestamp() if decision.decided_at is not None else now


def who_decided(decision: Decision, reviewer: str | None) -> str:
    who = reviewer or decision.reviewer
    if not who:
        raise ValueError(f"decision on {decision.comment_id!r} names no reviewer")
    return who


def no_calibration(model: str, version: int) -> CalibrationBins | None:
    return None


def utc(ts: float) -> datetime:
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
        self.calibration = calibration or no_calibration
        self.windows_kept = windows_kept
        self.clock = clock
        self._lock = threading.Lock()
        self._scores: dict[str, tuple[float, ScoreRecord]] = {}
        self._pending: dict[str, dict[str, tuple[float, int, float]]] = {}
        self._decided: dict[str, dict[str, tuple[float, int]]] = {}
        self._filling: dict[tuple[str, int], _Filling] = {}
        self._closed: dict[tuple[str, int], deque[QualityWindow]] = {}
        self._next_sweep = 0.0

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

    def record_scores(self, records: Sequence[ScoreRecord]) -> None:
        now = self.clock()
        with self._lock:
            self._sweep(now)
            groups: dict[tuple[str, int, float], list[float]] = {}
            for record in records:
                self._scores[record.comment_id] = (now + self.retention_s, record)
                key = (record.model, record.version, record.threshold)
                groups.setdefault(key, []).append(record.score)
                for reviewer, (expires, label, decided) in self._pending.pop(
                    record.comment_id, {}
                ).items():
                    if expires > now:
                        self._join(record, reviewer, label, decided, now)
            # The batch's estimate counters at once, per version (after its joins, as the
            # Redis store adds them).
            for (model, version, threshold), scores in groups.items():
                window = self._window(model, version, now)
                calibration = self.calibration(model, version)
                quality.add_estimate_counters(window.traffic, scores, threshold, calibration)

    def add_decisions(
        self, decisions: Sequence[Decision], reviewer: str | None = None
    ) -> list[Outcome]:
        now = self.clock()
        outcomes: list[Outcome] = []
        with self._lock:
            self._sweep(now)
            for decision in decisions:
                who = who_decided(decision, reviewer)
                cid = decision.comment_id
                decided = self._decided.setdefault(cid, {})
                previous = decided.get(who)
                if previous is not None and previous[0] > now and previous[1] == decision.label:
                    outcomes.append("duplicate")
                    continue
                decided[who] = (now + self.retention_s, decision.label)
                stored = self._scores.get(cid)
                at = decided_at(decision, now)
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
                        started_at=utc(filling.started),
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
            started_at=utc(window.started),
            closed_at=utc(now),
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
