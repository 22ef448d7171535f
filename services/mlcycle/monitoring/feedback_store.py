"""Where moderators' decisions meet the scores mlcycle gave: the join, and quality windows.

One contract, two implementations:
:class:`~mlcycle.monitoring.feedback_redis.RedisFeedbackStore` shares the join across
processes (API replicas, the stream scorer, the feedback consumer), :class:`MemoryFeedbackStore`
keeps it in one process (no Redis configured, tests). The same contract tests run on both.

The join is keyed by (comment id, model, version). During a rollout one comment is scored by
more than one version: production's answer and the shadow's score off the answer's path, or a
canary's answer and production's score beside it. Each version's score joins the decisions
on that comment into that version's own quality window, so each version's realized quality is
measured on the comments it scored, and no version's score replaces another's.

- :meth:`~FeedbackStore.record_scores` keeps each served score by (comment id, model,
  version) (score, threshold, when) for ``retention_s`` after the comment's latest score; a
  later score of the same comment by the same version replaces it (a re-score is
  idempotent), a score by another version is kept beside it. Each score also adds its CBPE
  counters to its version's filling window (the estimate before labels,
  :mod:`mlcycle.monitoring.quality`).
- :meth:`~FeedbackStore.add_decisions` answers per decision:

  - ``"joined"``: the comment has a score: the (score, label, threshold, lag) pair joins
    the filling quality window of every version that scored it;
  - ``"pending"``: no score yet (an unknown id, or a decision faster than its score);
  - ``"duplicate"``: the same reviewer already gave this comment this label; it counts
    once in each version's window.

  A joined or pending decision is kept ``retention_s``: a version's score recorded later
  joins it then, once per version (a score that has joined a decision is not joined again
  when the same version re-scores the comment), and a pending decision stops counting as
  pending once any version's score has joined it. A reviewer's *changed* label replaces
  the earlier one in each version's filling window (or while pending); a window that has
  closed is never rewritten, so a change after that counts in the filling window.

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
    """A served score of a comment by one model version, joinable by the comment's id."""

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


# (model, version): whose scores of one comment are kept apart.
VersionKey = tuple[str, int]


class MemoryFeedbackStore:
    """The join in this process's memory; entries expire ``retention_s`` after they were set
    (a comment's scores, ``retention_s`` after its latest)."""

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
        # comment -> (expiry, its scores per version)
        self._scores: dict[str, tuple[float, dict[VersionKey, ScoreRecord]]] = {}
        # comment -> reviewer -> (expiry, label, decided at)
        self._decided: dict[str, dict[str, tuple[float, int, float]]] = {}
        # comment -> (model, version, reviewer) -> the label that version's score joined
        self._joined: dict[str, dict[tuple[str, int, str], int]] = {}
        # (comment, reviewer) -> expiry: decisions no version's score has joined yet
        self._waiting: dict[tuple[str, str], float] = {}
        self._filling: dict[VersionKey, _Filling] = {}
        self._closed: dict[VersionKey, deque[QualityWindow]] = {}
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
                cid = record.comment_id
                expires, kept = self._scores.get(cid, (0.0, {}))
                kept = kept if expires > now else {}
                kept[(record.model, record.version)] = record
                self._scores[cid] = (now + self.retention_s, kept)
                key = (record.model, record.version, record.threshold)
                groups.setdefault(key, []).append(record.score)
                for who, (alive, label, decided) in self._decided.get(cid, {}).items():
                    if alive > now:
                        self._join(record, who, label, decided, now, once=True)
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
                if previous is None or previous[0] <= now:
                    # Forgotten: what its earlier decision joined is forgotten with it.
                    for mark in [m for m in self._joined.get(cid, {}) if m[2] == who]:
                        del self._joined[cid][mark]
                elif previous[1] == decision.label:
                    outcomes.append("duplicate")
                    continue
                at = decided_at(decision, now)
                decided[who] = (now + self.retention_s, decision.label, at)
                expires, kept = self._scores.get(cid, (0.0, {}))
                if expires <= now or not kept:
                    self._waiting[(cid, who)] = now + self.retention_s
                    outcomes.append("pending")
                    continue
                for record in kept.values():
                    self._join(record, who, decision.label, at, now, once=False)
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

    def _join(
        self, score: ScoreRecord, who: str, label: int, decided: float, now: float, *, once: bool
    ) -> None:
        """Join a decision to one version's score; with ``once``, not when that version's
        score has already joined this label (a re-score of the comment)."""
        cid = score.comment_id
        marks = self._joined.setdefault(cid, {})
        mark = (score.model, score.version, who)
        if once and marks.get(mark) == label:
            return
        marks[mark] = label
        self._waiting.pop((cid, who), None)
        window = self._window(score.model, score.version, now)
        lag = max(0.0, decided - score.scored_at.timestamp())
        window.pairs[(cid, who)] = Pair(score.score, label, score.threshold, lag)
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
        return sum(1 for expires in self._waiting.values() if expires > now)

    def _sweep(self, now: float) -> None:
        """Drop expired entries, at most once a tenth of the retention (bounded memory)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.retention_s / 10
        self._scores = {k: v for k, v in self._scores.items() if v[0] > now}
        self._waiting = {k: v for k, v in self._waiting.items() if v > now}
        for cid in list(self._decided):
            alive = {who: e for who, e in self._decided[cid].items() if e[0] > now}
            if alive:
                self._decided[cid] = alive
            else:
                del self._decided[cid]
        for cid in list(self._joined):
            # What a decision joined is kept as long as the decision.
            deciding = self._decided.get(cid, {})
            marks = {m: label for m, label in self._joined[cid].items() if m[2] in deciding}
            if marks:
                self._joined[cid] = marks
            else:
                del self._joined[cid]
