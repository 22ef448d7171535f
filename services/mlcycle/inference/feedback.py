"""Moderators' decisions in: joined to the scores this service gave, and on to the labeler.

- :class:`ScoreRecorder` keeps the scores of predictions whose instance carried an ``id``
  (the answers', and during a rollout the off-path scores, each under the version that
  gave it: the join is keyed by comment id, model and version), off the answer's path:
  the request only appends to a bounded queue; a thread writes the queue to the
  :mod:`join store <mlcycle.monitoring.feedback_store>` in batches. A full queue drops
  scores (counted) rather than slow an answer.
- :class:`FeedbackIntake` takes decisions (``POST /v1/feedback`` and the ``feedback``
  topic): checks them, joins them, and produces each as a trusted human vote to
  ``votes.reviewed``, as the labeler's review queue does, so the next label run learns
  from it.
- :func:`open_feedback_store` picks the store: Redis when the service has one (the score
  cache's server), so every replica, the stream scorer and the feedback consumer share the
  join; else one in this process.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime

from prometheus_client import Counter
from pydantic import ValidationError

from mlcycle.common.errors import InvalidInput
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.redis_connection import connection_options
from mlcycle.common.settings import Settings
from mlcycle.contracts.comments import HumanLabel
from mlcycle.contracts.messages import flat_errors
from mlcycle.contracts.monitoring import PROFILE_FILE, CalibrationBins, Decision, ReferenceProfile
from mlcycle.inference.metadata import ServedModel
from mlcycle.inference.schemas import PredictionRow
from mlcycle.monitoring.feedback_redis import RedisFeedbackStore
from mlcycle.monitoring.feedback_store import (
    CalibrationOf,
    FeedbackStore,
    MemoryFeedbackStore,
    Outcome,
    ScoreRecord,
)

log = logging.getLogger(__name__)

# Scores waiting for the recorder's thread; beyond it they are dropped, never waited for.
QUEUE_SCORES = 20_000
# The recorder writes what is queued at least this often.
FLUSH_S = 0.2
# Scores written per store call.
WRITE_BATCH = 500

SCORES_DROPPED = Counter(
    "mlcycle_feedback_scores_dropped_total",
    "Scores of predictions with an id not kept for joining (queue full or store down)",
)
DECISIONS = Counter(
    "mlcycle_feedback_decisions_total",
    "Moderators' decisions received, by how they joined",
    ["outcome"],
)


class ScoreRecorder:
    """Queue scores on the serving path; write them to the join store on a thread."""

    def __init__(
        self, store: FeedbackStore, *, max_queued: int = QUEUE_SCORES, flush_s: float = FLUSH_S
    ) -> None:
        self.store = store
        self.max_queued = max_queued
        self.flush_s = flush_s
        # (comment id, model, prediction row, when): turned into records off the serving path.
        self._queue: deque[tuple[str, str, PredictionRow, float]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="score-recorder", daemon=True)
        self._thread.start()

    def offer(
        self, model: str, ids: Sequence[str | None] | None, predictions: Sequence[PredictionRow]
    ) -> None:
        """Queue the binary scores of the instances that carry an id (a few appends; the
        records are built on the recorder's thread). Nothing to do without ids."""
        if ids is None or not any(ids):
            return
        now = time.time()
        queue = self._queue
        for comment_id, row in zip(ids, predictions, strict=True):
            if comment_id is None or row["threshold"] is None:
                continue
            if len(queue) >= self.max_queued:
                SCORES_DROPPED.inc()
                continue
            queue.append((comment_id, model, row, now))
        if len(queue) >= WRITE_BATCH:
            self._wake.set()

    def flush(self) -> None:
        """Write everything queued so far (tests, shutdown)."""
        while self._queue:
            taken = [self._queue.popleft() for _ in range(min(WRITE_BATCH, len(self._queue)))]
            batch = [
                ScoreRecord(
                    comment_id,
                    model,
                    row["model_version"],
                    row["score"],
                    row["threshold"],  # type: ignore[arg-type]  (binary rows only)
                    datetime.fromtimestamp(at, UTC),
                )
                for comment_id, model, row, at in taken
            ]
            try:
                self.store.record_scores(batch)
            except Exception as exc:  # Redis down: the scores are lost, the service goes on
                SCORES_DROPPED.inc(len(batch))
                log.warning("scores not recorded for feedback: %s", exc)

    def close(self) -> None:
        """Write what is queued, stop the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join(10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()


class FeedbackIntake:
    """Checks decisions, joins them to their scores and sends them to the labeler as votes."""

    def __init__(self, settings: Settings, store: FeedbackStore) -> None:
        self.settings = settings
        self.store = store
        self.topic = settings.kafka.topics.votes_reviewed
        self._producer: RecordProducer | None = None
        self._lock = threading.Lock()

    def check(self, decisions: Sequence[Decision]) -> None:
        """InvalidInput naming the first decision whose label is not a class of its task
        (or whose task could not name a human label's)."""
        for index, decision in enumerate(decisions):
            try:  # what the labeler will be sent must be a valid human label
                HumanLabel(item_id=decision.comment_id, label=decision.label, task=decision.task)
            except ValidationError as exc:
                raise InvalidInput(
                    f"decision {index}: {flat_errors(exc)}", details={"index": index}
                ) from None
            classes = self.settings.labeler.classes_of(decision.task)
            if decision.label >= classes:
                raise InvalidInput(
                    f"decision {index}: label {decision.label} is not a class of task "
                    f"{decision.task!r} (0 to {classes - 1})",
                    details={"index": index, "field": "label"},
                )

    def take(
        self,
        decisions: Sequence[Decision],
        reviewers: Sequence[str],
        producer: RecordProducer | None = None,
    ) -> list[Outcome]:
        """Join each decision (by its reviewer), then produce the votes; outcomes in order.

        Both steps are idempotent, so a retry after a failed produce only finds duplicates.
        """
        named = [
            d.model_copy(update={"reviewer": who})
            for d, who in zip(decisions, reviewers, strict=True)
        ]
        outcomes = self.store.add_decisions(named)
        for outcome in outcomes:
            DECISIONS.labels(outcome).inc()
        votes = [
            HumanLabel(item_id=d.comment_id, label=d.label, task=d.task).to_vote(who)
            for d, who in zip(decisions, reviewers, strict=True)
        ]
        (producer or self.producer()).send_batch(self.topic, (v.to_message() for v in votes))
        return outcomes

    def producer(self) -> RecordProducer:
        """The votes' producer, connected on first use (predictions never need Kafka)."""
        with self._lock:
            if self._producer is None:
                self._producer = RecordProducer(self.settings.kafka, client_id="inference-feedback")
            return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()


def calibration_reader(model: ServedModel) -> CalibrationOf:
    """``(name, version) -> CalibrationBins | None`` from the version's ``profile.json``."""

    @functools.lru_cache(maxsize=16)
    def calibration(name: str, version: int) -> CalibrationBins | None:
        path = model.version_dir(version) / PROFILE_FILE
        if name != model.name or not path.is_file():
            return None
        try:
            return ReferenceProfile.model_validate_json(path.read_bytes()).calibration
        except (OSError, ValueError) as exc:
            log.warning("no calibration for version %s: %s", version, exc)
            return None

    return calibration


def open_feedback_store(settings: Settings, redis_url: str | None) -> FeedbackStore:
    """The join store: on ``redis_url`` (shared), else in this process."""
    config = settings.monitoring
    model = ServedModel(
        settings.trainer.model_name, settings.trainer.models_dir, settings.featurizer.artifacts_dir
    )
    retention, window = config.feedback_retention_s, config.quality_window_decisions
    calibration = calibration_reader(model)
    if redis_url:
        return RedisFeedbackStore.from_url(
            redis_url,
            connection=connection_options(settings.cache),
            retention_s=retention,
            window_decisions=window,
            calibration=calibration,
        )
    log.info("no Redis: decisions join only the scores this process gave")
    return MemoryFeedbackStore(
        retention_s=retention, window_decisions=window, calibration=calibration
    )
