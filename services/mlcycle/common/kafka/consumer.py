"""The one consumer loop every service runs: poll, handle, dead-letter, then commit.

Delivery is at least once and nothing is lost:

- auto-commit is off; a batch's offsets are committed only after the handler
  returned (its effect is durable, e.g. a bulk store upsert) and every record
  it rejected is acknowledged by the dead-letter topic;
- if the handler (or the dead-letter produce) raises, nothing is committed:
  the consumer seeks back to the start of the batch and retries it after an
  exponential backoff, so a store outage only delays records;
- SIGTERM/SIGINT set a stop flag; the loop finishes the current batch,
  commits it and leaves the group.

Records may therefore be handled twice (after a crash or a rebalance), which
is why every store write is an idempotent upsert by id.

The records a handler sees are in :mod:`.records`, the commit bookkeeping in
:mod:`.offsets`, the dead-letter routing in :mod:`.deadletter`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from mlcycle.common.errors import Unavailable
from mlcycle.common.kafka.connection import new_consumer
from mlcycle.common.kafka.deadletter import DeadLetterRouter
from mlcycle.common.kafka.offsets import PendingCommits, batch_bounds
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.records import ConsumedRecord, Failure, Handler
from mlcycle.common.metrics import BATCH_SECONDS, RECORDS_CONSUMED, RECORDS_DEAD_LETTERED
from mlcycle.common.settings import KafkaSettings

# Handlers import their record types from here, beside the loop that calls them.
__all__ = [
    "ConsumedRecord",
    "ConsumerLoop",
    "Failure",
    "Handler",
    "LoopStats",
]

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass
class LoopStats:
    """What a loop has done so far (read by tests, benchmarks and health endpoints)."""

    records: int = 0
    dead_lettered: int = 0
    batches: int = 0
    retries: int = 0
    commits: int = 0
    last_activity: float | None = field(default=None, repr=False)


class ConsumerLoop:
    """Consume ``topics`` as member of ``group_id``, handing each polled batch to ``handler``.

    ``producer`` is used for dead-letter records; without one the loop opens
    its own on the first rejected record and closes it on exit.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        topics: list[str],
        group_id: str,
        handler: Handler,
        service: str,
        producer: RecordProducer | None = None,
    ) -> None:
        self.kafka = kafka
        self.topics = list(topics)
        self.group_id = group_id
        self.handler = handler
        self.service = service
        self.stats = LoopStats()
        self._dead_letters = DeadLetterRouter(kafka, service, producer)
        self._stop = threading.Event()
        self._offsets = PendingCommits()
        self._failed_attempts = 0

    # -- public -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the current batch, commit and return (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (or a stop signal arrived)."""
        return self._stop.is_set()

    def run(self, install_signal_handlers: bool = True) -> None:
        """Consume until :meth:`stop` or SIGTERM/SIGINT; then final commit and close.

        Signal handlers can only be installed from the main thread; elsewhere
        the flag is ignored and the caller stops the loop with :meth:`stop`.
        """
        with self._signals(install_signal_handlers):
            self._run(lambda: False)

    def run_until_idle(self, idle_s: float = 2.0, timeout_s: float = 60.0) -> LoopStats:
        """Consume until no record arrived for ``idle_s`` after joining the group.

        Meant for tests, benchmarks and one-shot batch jobs; returns the stats.
        Stops after ``timeout_s`` at the latest.
        """
        deadline = time.monotonic() + timeout_s

        def done() -> bool:
            now = time.monotonic()
            last = self.stats.last_activity
            return now >= deadline or (last is not None and now - last >= idle_s)

        self._run(done)
        return self.stats

    # -- the loop -----------------------------------------------------------------------------

    def _run(self, done: Callable[[], bool]) -> None:
        consumer = self._connect()
        log.info(
            "consumer loop started",
            extra={"topics": self.topics, "group": self.group_id, "service": self.service},
        )
        try:
            while not self._stop.is_set() and not done():
                self._step(consumer)
        finally:
            self._close(consumer)

    def _connect(self) -> KafkaConsumer:
        kafka = self.kafka
        try:
            consumer = new_consumer(
                kafka,
                client_id=f"{self.service}-{self.group_id}",
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=kafka.session_timeout_ms,
                heartbeat_interval_ms=kafka.heartbeat_interval_ms,
                max_poll_records=kafka.max_poll_records,
                # Longer than the longest retry backoff plus a slow batch.
                max_poll_interval_ms=300_000,
                request_timeout_ms=kafka.request_timeout_ms,
                bootstrap_timeout_ms=kafka.request_timeout_ms,
            )
        except KafkaError as exc:
            raise Unavailable(
                f"cannot connect a Kafka consumer to {kafka.bootstrap_servers}: {exc}"
            ) from exc
        consumer.subscribe(self.topics)
        return consumer

    def _step(self, consumer: KafkaConsumer) -> None:
        if self.stats.last_activity is None and consumer.assignment():
            self.stats.last_activity = time.monotonic()
        try:
            polled = consumer.poll(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self.kafka.max_poll_records
            )
        except KafkaError as exc:
            # The client reconnects by itself; a broken poll is retried, never fatal.
            log.warning("poll failed; retrying", extra={"error": str(exc)})
            self._stop.wait(BACKOFF_FIRST_S)
            return
        batch = [ConsumedRecord.from_kafka(raw) for tp in sorted(polled) for raw in polled[tp]]
        if not batch:
            self._commit_pending(consumer)
            return
        self.stats.last_activity = time.monotonic()
        started = time.perf_counter()
        try:
            failures = self.handler(batch)
            self._dead_letters.send(failures)
        except Exception:
            self._retry_later(consumer, batch)
            return
        self._failed_attempts = 0
        self._offsets.handled(batch)
        self._commit_pending(consumer)
        self._count(batch, failures)
        BATCH_SECONDS.labels(self.group_id).observe(time.perf_counter() - started)

    def _retry_later(self, consumer: KafkaConsumer, batch: list[ConsumedRecord]) -> None:
        """Rewind to the batch start so it is polled again, after a growing pause."""
        self._failed_attempts += 1
        self.stats.retries += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self._failed_attempts - 1))
        log.exception(
            "batch failed; nothing committed, retrying",
            extra={
                "group": self.group_id,
                "records": len(batch),
                "attempt": self._failed_attempts,
                "retry_in_s": delay,
            },
        )
        first, _ = batch_bounds(batch)
        for tp, offset in first.items():
            try:
                consumer.seek(tp, offset)
            except ValueError:
                # Revoked meanwhile: its new owner resumes from the last commit.
                log.info("partition revoked during retry", extra={"partition": str(tp)})
        self._stop.wait(delay)
        self.stats.last_activity = time.monotonic()

    def _commit_pending(self, consumer: KafkaConsumer) -> None:
        if self._offsets.commit(consumer):
            self.stats.commits += 1

    def _count(self, batch: list[ConsumedRecord], failures: list[Failure]) -> None:
        self.stats.batches += 1
        self.stats.records += len(batch)
        self.stats.dead_lettered += len(failures)
        per_topic: dict[str, int] = {}
        for record in batch:
            per_topic[record.topic] = per_topic.get(record.topic, 0) + 1
        for topic, n in per_topic.items():
            RECORDS_CONSUMED.labels(topic, self.group_id).inc(n)
        for failure in failures:
            RECORDS_DEAD_LETTERED.labels(failure.record.topic, self.group_id).inc()

    def _close(self, consumer: KafkaConsumer) -> None:
        """Final commit, leave the group (so partitions move at once), close the DLQ producer."""
        self._commit_pending(consumer)
        try:
            consumer.close(autocommit=False)
        except KafkaError as exc:
            log.warning("consumer close failed", extra={"error": str(exc)})
        self._dead_letters.close()
        log.info(
            "consumer loop stopped", extra={"group": self.group_id, "records": self.stats.records}
        )

    # -- signals ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _signals(self, install: bool) -> Iterator[None]:
        if not install or threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, _frame: object) -> None:
            if self._stop.is_set():
                # A second signal: the operator insists. Nothing of the current batch
                # is committed, so it is redelivered later.
                raise KeyboardInterrupt
            log.info("stop requested", extra={"signal": signal.Signals(signum).name})
            self._stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
