"""The ``feedback`` topic: moderators' decisions from any producer, joined like the API's.

Runs in the shared consumer loop (``run_consumer_service``) as its own small process,
``inference-feedback``. A record that is not a decision (bad JSON, unknown fields), names
no reviewer (a topic has no caller to take it from) or a label outside its task's classes
goes to the dead-letter topic and the stream goes on. The valid ones of a batch are joined
in the shared store and produced as votes before the loop commits their offsets; a store
or broker outage raises, so nothing is committed and the batch is retried (both writes are
idempotent: a retried decision is a duplicate, a retried vote an upsert).
"""

from __future__ import annotations

import logging

from mlcycle.common.errors import InvalidInput
from mlcycle.common.kafka.consumer import ConsumedRecord, Failure
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.service import run_consumer_service
from mlcycle.common.settings import Settings
from mlcycle.contracts.messages import InvalidRecord, decode_record
from mlcycle.contracts.monitoring import Decision
from mlcycle.inference.feedback import FeedbackIntake, open_feedback_store

log = logging.getLogger(__name__)

SERVICE = "inference-feedback"


class FeedbackConsumer:
    """The consumer-loop handler: decisions joined and sent on; bad records dead-lettered."""

    def __init__(self, intake: FeedbackIntake, producer: RecordProducer) -> None:
        self.intake = intake
        self.producer = producer

    def __call__(self, records: list[ConsumedRecord]) -> list[Failure]:
        failures: list[Failure] = []
        decisions: list[Decision] = []
        for record in records:
            try:
                decision = decode_record(record.value, Decision)
            except InvalidRecord as exc:
                failures.append(Failure(record, str(exc)))
                continue
            if decision.reviewer is None:
                failures.append(Failure(record, "reviewer: required on the feedback topic"))
                continue
            try:
                self.intake.check([decision])
            except InvalidInput as exc:
                failures.append(Failure(record, exc.message))
                continue
            decisions.append(decision)
        if decisions:
            reviewers = [d.reviewer or "" for d in decisions]
            self.intake.take(decisions, reviewers, producer=self.producer)
        return failures


def run_feedback(settings: Settings) -> None:
    """Join the ``feedback`` topic's decisions until SIGINT/SIGTERM.

    Decisions join the scores in the Redis the inference API records them in
    (``MLCYCLE_REDIS_URL``); without it they still reach the labeler, but join no score
    (a warning says so). Serves ``/healthz``, ``/readyz`` and ``/metrics`` on
    ``settings.monitoring.feedback_metrics_port``.
    """
    if not settings.cache.redis_url:
        log.warning("no MLCYCLE_REDIS_URL: decisions go on to the labeler but join no score")
    store = open_feedback_store(settings, settings.cache.redis_url)
    intake = FeedbackIntake(settings, store)
    try:
        run_consumer_service(
            settings,
            service=SERVICE,
            topics=[settings.kafka.topics.feedback],
            group_id=settings.monitoring.feedback_group_id,
            metrics_port=settings.monitoring.feedback_metrics_port,
            handler=lambda _store, producer: FeedbackConsumer(intake, producer),
        )
    finally:
        intake.close()
        store.close()
