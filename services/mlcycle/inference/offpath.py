"""Scoring off the answer's path: the shadow's scores, or production's beside a canary answer.

A request only appends its :class:`OffPathWork` to a bounded queue
(:meth:`OffPathScorer.offer`: a lock and an append); when the queue holds
``capacity`` instances the work is counted as skipped and dropped, so an answer
never waits and never fails because of it. A daemon thread drains the queue,
groups the work per version and scores it in batches of up to ``batch_rows``
(cache first, the version's own transform, the same model client as the
answers), then records in the rollout's evidence the call (latency, ok) and the
pairs (production and candidate scores of the same comments, at each version's
threshold). The shadow's answers are also handed to the live monitor under the
shadow's version, so its drift signals are watched like production's. The scores of
instances that carry an id go to :attr:`OffPathScorer.record_scores` under the version
that gave them (the shadow's, or production's beside a canary answer), so moderators'
decisions join them into that version's own quality window, beside the answer's score.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlcycle.contracts.rollouts import ROLES, Role
from mlcycle.inference.answers import format_predictions
from mlcycle.inference.metrics import OFFPATH, OFFPATH_QUEUED
from mlcycle.inference.schemas import PredictionRow
from mlcycle.inference.versions import ModelVersion

if TYPE_CHECKING:
    from mlcycle.inference.evidence import EvidenceBook
    from mlcycle.inference.monitor import LiveMonitor

log = logging.getLogger(__name__)

# The worker scores what is queued at once when a batch's worth is, else this often: each
# round pays a cache read, a featurization and a Predict call whatever it holds, so a few
# instances per round (a 5 % canary's) would cost far more than their share. The evidence
# is shared every second anyway.
POLL_S = 0.5
# Instances featurized and looked up in the cache at once, in Predict batches: this many
# batches' worth. Fewer rounds, fewer fixed costs: with a shadow on every request at 8
# clients (2 cores, benchmarks/serving.py's model), 4 batches of 64 cost the inference
# process about 135 us of CPU per request where 1 cost 190 and a quarter of one 320.
OFFPATH_BATCHES = 4
# On shutdown the queued work is scored for at most this long; the rest is skipped.
STOP_BUDGET_S = 3.0
# Scores (class probabilities) of texts by a version, cache first: the predictor's.
ScoreFunction = Callable[
    [ModelVersion, Sequence[str], Sequence[Mapping[str, Any] | None] | None], np.ndarray
]

# Where scores go to be joined with decisions: (model name, ids, rows), rows naming their
# version (the feedback ScoreRecorder's offer).
ScoreSink = Callable[[str, Sequence[str | None] | None, Sequence[PredictionRow]], None]


@dataclass(eq=False)
class OffPathWork:
    """Instances one version answered, to be scored by another off the answer's path."""

    rollout: str
    model: ModelVersion
    role: Role
    answered: ModelVersion
    texts: list[str]
    metadata: list[Mapping[str, Any] | None] | None
    ids: list[str | None] | None
    answered_scores: np.ndarray  # the answering version's scores of the same instances


_COUNTERS = {
    (role, outcome): OFFPATH.labels(role, outcome)
    for role in ROLES
    for outcome in ("scored", "skipped", "failed")
}


class OffPathScorer:
    """The bounded queue of off-path work and the thread that scores it."""

    def __init__(
        self,
        score: ScoreFunction,
        book: EvidenceBook,
        *,
        capacity: int,
        batch_rows: int,
        monitor: LiveMonitor | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.score = score
        self.book = book
        self.capacity = capacity
        self.batch_rows = batch_rows
        self.monitor = monitor
        # Called after a failed call (the tracker refreshes: the version may be gone).
        self.on_failure = on_failure
        # Set once the feedback store is open (the service's, or the stream's).
        self.record_scores: ScoreSink | None = None
        self._queue: deque[OffPathWork] = deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline = float("inf")

    # -- the request's path ---------------------------------------------------------------------

    def offer(self, work: OffPathWork) -> bool:
        """Queue ``work``, or count it skipped when the queue is full (never waits)."""
        n = len(work.texts)
        with self._lock:
            if self._queued + n <= self.capacity:
                self._queue.append(work)
                self._queued += n
                queued = self._queued
            else:
                queued = -1
        if queued < 0:
            _COUNTERS[(work.role, "skipped")].inc(n)
            return False
        OFFPATH_QUEUED.set(queued)
        if queued >= self.batch_rows:
            self._wake.set()
        return True

    @property
    def queued(self) -> int:
        """Instances waiting for the worker."""
        return self._queued

    # -- the worker -------------------------------------------------------------------------------

    def start(self) -> OffPathScorer:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name="offpath", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Score what is queued (for up to STOP_BUDGET_S), then stop the worker."""
        self._deadline = time.monotonic() + STOP_BUDGET_S
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        else:
            self.run_once()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            self.run_once()
        self.run_once()

    def run_once(self) -> int:
        """Score everything queued now; the instances scored (or failed)."""
        with self._lock:
            items, self._queue = self._queue, deque()
            self._queued = 0
        OFFPATH_QUEUED.set(0)
        groups: dict[tuple[str, int, int, str], list[OffPathWork]] = {}
        for work in items:
            key = (work.rollout, work.model.version, work.answered.version, work.role)
            groups.setdefault(key, []).append(work)
        done = 0
        for batch in groups.values():
            try:
                done += self._score_group(batch)
            except Exception:  # the worker must outlive any surprise
                log.exception("off-path scoring failed")
        return done

    def _score_group(self, batch: list[OffPathWork]) -> int:
        first = batch[0]
        texts = [text for work in batch for text in work.texts]
        with_metadata = any(work.metadata is not None for work in batch)
        metadata: list[Mapping[str, Any] | None] | None = None
        if with_metadata:
            metadata = []
            for work in batch:
                metadata.extend(work.metadata or [None] * len(work.texts))
        ids: list[str | None] = []
        for work in batch:
            ids.extend(work.ids or [None] * len(work.texts))
        answered = np.concatenate([work.answered_scores for work in batch])
        for start in range(0, len(texts), self.batch_rows):
            stop = start + self.batch_rows
            if self._stop.is_set() and time.monotonic() > self._deadline:
                # Shutting down and out of time: the rest is skipped, not waited for.
                _COUNTERS[(first.role, "skipped")].inc(len(texts) - start)
                break
            self._score_chunk(
                first,
                texts[start:stop],
                None if metadata is None else metadata[start:stop],
                ids[start:stop],
                answered[start:stop],
            )
            time.sleep(0)  # let the answers' threads have the interpreter between chunks
        return len(texts)

    def _score_chunk(
        self,
        first: OffPathWork,
        texts: list[str],
        metadata: list[Mapping[str, Any] | None] | None,
        ids: list[str | None],
        answered: np.ndarray,
    ) -> None:
        model, role, n = first.model, first.role, len(texts)
        started = time.perf_counter()
        try:
            probabilities = self.score(model, texts, metadata)
        except Exception as exc:
            self.book.call(first.rollout, role, n, time.perf_counter() - started, False)
            _COUNTERS[(role, "failed")].inc(n)
            log.debug("off-path scoring by version %s failed: %s", model.version, exc)
            if self.on_failure is not None:
                self.on_failure()
            return
        self.book.call(first.rollout, role, n, time.perf_counter() - started, True)
        _COUNTERS[(role, "scored")].inc(n)
        other = first.answered
        if model.binary and other.binary:
            scores = probabilities[:, 1]
            if role == "candidate":
                pairs = (answered, scores, other.threshold, model.threshold)
            else:
                pairs = (scores, answered, model.threshold, other.threshold)
            self.book.pairs(first.rollout, *pairs)  # type: ignore[arg-type]  (binary: set)
        rows: list[PredictionRow] | None = None
        record = self.record_scores
        if record is not None and model.binary and any(ids):
            # Joinable with decisions under this version, never in place of the answer's.
            rows = format_predictions(model, probabilities)
            record(model.name, ids, rows)
        if role == "candidate" and self.monitor is not None:
            # The shadow's records, under its version: its drift signals are watched too.
            rows = rows or format_predictions(model, probabilities)
            self.monitor.observe(model, texts, metadata, rows, ids)
