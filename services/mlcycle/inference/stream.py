"""Streaming scores: ``comments.raw`` in, ``scored.comments`` out, the score on the stored comment.

Runs in the shared consumer loop (``run_consumer_service``), so offsets are
committed only after a batch's scores are written and produced. A record that
is not a comment (bad JSON, no text) is handed back to the loop, which
dead-letters it and goes on. A model-server outage is not the record's fault:
the batch raises, nothing is committed, and the loop retries it after a backoff.

Where the score is stored. Store upserts *replace* a document, and the
collector-indexer writes each comment from the same topic in its own consumer
group, so whichever of the two writes last would erase the other's part. The
scorer therefore writes a comment's score only once the indexer has committed
past that record (its committed offset on the same partition), and writes it as
a read-modify-write of the stored comment (``"prediction"`` added, everything
else kept). The indexer never rewrites a record it has committed, and a new
version of a comment (a later record with the same id) is scored again after
the indexer has stored it, so the stored comment always ends with both its own
fields and the score of its latest version.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

from fastapi import FastAPI
from kafka import TopicPartition

from mlcycle.common.errors import InvalidInput
from mlcycle.common.http import (
    BackgroundServer,
    add_health_routes,
    install_edge,
)
from mlcycle.common.kafka.consumer import ConsumedRecord, Failure
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.progress import CommittedOffsets, IndexerProgress
from mlcycle.common.kafka.service import run_consumer_service
from mlcycle.common.settings import Settings
from mlcycle.common.store import Store
from mlcycle.contracts.comments import Comment
from mlcycle.contracts.messages import InvalidRecord, decode_record
from mlcycle.contracts.repositories.scores import CommentScores
from mlcycle.contracts.scores import CommentScore, utc_now
from mlcycle.inference.feedback import ScoreRecorder, open_feedback_store
from mlcycle.inference.predictor import Predictor
from mlcycle.inference.runtime import InferenceRuntime
from mlcycle.monitoring.feedback_store import FeedbackStore, ScoreRecord

log = logging.getLogger(__name__)

SERVICE = "inference-stream"
# How long a batch waits for the indexer to store its comments before it is retried later.
INDEXER_WAIT_S = 10.0
# How often the serving version is asked for while none is servable yet.
MODEL_POLL_S = 0.5

Scored = tuple[ConsumedRecord, Comment]


class StreamScorer:
    """The consumer-loop handler: score a batch, store the scores, produce them; poison out."""

    def __init__(
        self,
        predictor: Predictor,
        store: Store,
        producer: RecordProducer,
        indexer: IndexerProgress,
        *,
        topic: str,
        batch_size: int,
        indexer_wait_s: float = INDEXER_WAIT_S,
        feedback: FeedbackStore | None = None,
    ) -> None:
        self.topic = topic
        self.batch_size = batch_size
        self.indexer_wait_s = indexer_wait_s
        self.predictor = predictor
        self.scores = CommentScores(store)
        self.producer = producer
        self.indexer = indexer
        self.feedback = feedback

    def __call__(self, records: list[ConsumedRecord]) -> list[Failure]:
        """Score every comment of the batch (raises, so nothing commits, when that fails)."""
        failures: list[Failure] = []
        comments: list[Scored] = []
        for record in records:
            try:
                comments.append((record, decode_record(record.value, Comment)))
            except InvalidRecord as exc:
                failures.append(Failure(record, str(exc)))
        if not comments:
            return failures
        self.indexer.wait_past(_next_offsets(comments), self.indexer_wait_s)
        size = self.batch_size
        for start in range(0, len(comments), size):
            failures.extend(self._score(comments[start : start + size]))
        return failures

    def _score(self, chunk: list[Scored]) -> list[Failure]:
        try:
            scores = self._predict(chunk)
        except InvalidInput as exc:
            # Not expected (unknown metadata is ignored here): find the records at fault.
            if len(chunk) == 1:
                return [Failure(chunk[0][0], exc.message)]
            return [failure for item in chunk for failure in self._score([item])]
        self._store(chunk, scores)
        self._record(chunk, scores)
        self.producer.send_batch(
            self.topic,
            [
                score.to_message(comment.id)
                for (_, comment), score in zip(chunk, scores, strict=True)
            ],
        )
        return []

    def _predict(self, chunk: list[Scored]) -> list[CommentScore]:
        texts = [comment.text for _, comment in chunk]
        metadata = [comment.metadata or None for _, comment in chunk]
        _, predictions = self.predictor.predict(
            texts,
            metadata if any(metadata) else None,
            unknown_fields="ignore",
            source="stream",
            ids=[comment.id for _, comment in chunk],
        )
        scored_at = utc_now()
        return [CommentScore(**prediction, scored_at=scored_at) for prediction in predictions]

    def _record(self, chunk: list[Scored], scores: list[CommentScore]) -> None:
        """Keep the binary scores joinable with moderators' decisions (best effort: a
        store outage loses joins, never holds up the stream)."""
        if self.feedback is None:
            return
        name = self.predictor.tracker.name
        records = [
            ScoreRecord(
                comment.id, name, s.model_version, s.score, s.threshold, s.scored_at or utc_now()
            )
            for (_, comment), s in zip(chunk, scores, strict=True)
            if s.threshold is not None
        ]
        try:
            self.feedback.record_scores(records)
        except Exception as exc:
            log.warning("scores not recorded for feedback: %s", exc)

    def _store(self, chunk: list[Scored], scores: list[CommentScore]) -> None:
        """Add each score to its stored comment (the latest of a comment's records wins)."""
        latest = {comment.id: score for (_, comment), score in zip(chunk, scores, strict=True)}
        stored = self.scores.attach(latest)
        if stored < len(latest):
            # The indexer committed past them without storing them: it refused them.
            log.info("scored comments not in the store", extra={"missing": len(latest) - stored})


def _next_offsets(comments: list[Scored]) -> dict[TopicPartition, int]:
    """Per partition, the offset the indexer must have committed for the batch to be stored."""
    needed: dict[TopicPartition, int] = {}
    for record, _ in comments:
        tp = TopicPartition(record.topic, record.partition)
        needed[tp] = max(needed.get(tp, 0), record.offset + 1)
    return needed


def run_stream(settings: Settings) -> None:
    """Score ``comments.raw`` into ``scored.comments`` until SIGINT/SIGTERM.

    Serves ``/healthz``, ``/readyz`` and ``/metrics`` on
    ``settings.inference.stream_metrics_port``. Consuming starts once a model
    version is servable: records that arrive before (a fresh stack, before the
    first training) wait in the topic rather than in retry backoffs, and are
    scored as soon as the model is there. Scores are cached only when
    ``MLCYCLE_REDIS_URL`` is set.
    """
    runtime = InferenceRuntime.open(settings)
    # Without a shared Redis the API could not join decisions to these scores anyway.
    redis_url = settings.cache.redis_url
    feedback = open_feedback_store(settings, redis_url) if redis_url else None
    # The shadow's scores (or production's beside a canary answer), under their own version.
    offpath_scores = ScoreRecorder(feedback) if feedback is not None else None
    if runtime.offpath is not None and offpath_scores is not None:
        runtime.offpath.record_scores = offpath_scores.offer
    indexer = CommittedOffsets(
        settings.kafka,
        settings.collector.indexer_group_id,
        waiting_for="scores are written after the comments they belong to",
    )
    try:
        health_at = (settings.host, settings.inference.stream_metrics_port)
        if not wait_for_model(runtime, health_at):
            return
        run_consumer_service(
            settings,
            service=SERVICE,
            topics=[settings.kafka.topics.comments_raw],
            group_id=settings.inference.group_id,
            metrics_port=settings.inference.stream_metrics_port,
            handler=lambda store, producer: StreamScorer(
                runtime.predictor,
                store,
                producer,
                indexer,
                topic=settings.kafka.topics.scored_comments,
                batch_size=settings.inference.stream_batch_size,
                feedback=feedback,
            ),
        )
    finally:
        indexer.close()
        runtime.close()  # scores the queued off-path work: its scores go to the recorder
        if offpath_scores is not None:
            offpath_scores.close()
        if feedback is not None:
            feedback.close()


def wait_for_model(
    runtime: InferenceRuntime, health_at: tuple[str, int], stop: threading.Event | None = None
) -> bool:
    """Block until a model version is servable (True), or a stop signal arrives (False).

    Meanwhile ``/healthz``, ``/readyz`` (503 until then) and ``/metrics`` answer on
    ``health_at`` (host, port), the stream's metrics port.
    """
    stop = stop or threading.Event()
    app = FastAPI(title=f"mlcycle {SERVICE}", docs_url=None, redoc_url=None)
    # Its routes take no body, so none is accepted.
    install_edge(app, service=SERVICE, max_body_bytes=0)
    add_health_routes(app, runtime.ready_checks)
    health = BackgroundServer(app, *health_at)
    with _stop_on_signals(stop):
        health.start()
        try:
            logged = False
            while not stop.is_set():
                if runtime.tracker.refresh() is not None:
                    return True
                if not logged:
                    log.info("waiting for a servable model version before consuming")
                    logged = True
                stop.wait(MODEL_POLL_S)
            return False
        finally:
            health.stop()


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` meanwhile (signal handlers only exist in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        sig: signal.signal(sig, lambda signum, frame: stop.set())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
