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
"""

from __future__ import annotations

import base64
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError

from mlcycle.common.errors import Unavailable
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.metrics import BATCH_SECONDS, RECORDS_CONSUMED, RECORDS_DEAD_LETTERED
from mlcycle.common.settings import Settings

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
DLQ_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ConsumedRecord:
    """One record as the handler sees it; ``key`` is the record id."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Failure:
    """A record the handler rejected (it goes to the dead-letter topic), and why."""

    record: ConsumedRecord
    error: str


Handler = Callable[[list[ConsumedRecord]], list[Failure]]


@dataclass
class LoopStats:
    """What a loop has done so far (read by tests, benchmarks and health endpoints)."""

    records: int = 0
    dead_lettered: int = 0
    batches: int = 0
    retries: int = 0
    commits: int = 0
    last_activity: float | None = field(default=None, repr=False)


def dead_letter_message(failure: Failure, service: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers of the dead-letter twin of a rejected record.

    The value is JSON: the original record with its position (the value as
    text when it is UTF-8, else base64), the error, the service and the time.
    The original headers are kept, and the error travels in a header too so
    that tools can filter without parsing the value.
    """
    record = failure.record
    original: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "timestamp_ms": record.timestamp_ms,
    }
    try:
        original["value"] = record.value.decode("utf-8")
        original["value_encoding"] = "utf-8"
    except UnicodeDecodeError:
        original["value"] = base64.b64encode(record.value).decode("ascii")
        original["value_encoding"] = "base64"
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    value = orjson.dumps(
        {"original": original, "error": failure.error, "service": service, "time": now}
    )
    headers = [
        *record.headers,
        ("mlcycle-dlq-error", failure.error.encode("utf-8", errors="replace")[:1024]),
        ("mlcycle-dlq-service", service.encode("utf-8")),
        ("mlcycle-dlq-origin", f"{record.topic}/{record.partition}/{record.offset}".encode()),
    ]
    return value, headers


def _to_record(raw: Any) -> ConsumedRecord:
    key = raw.key.decode("utf-8", errors="replace") if raw.key is not None else None
    return ConsumedRecord(
        topic=raw.topic,
        partition=raw.partition,
        offset=raw.offset,
        key=key,
        value=raw.value if raw.value is not None else b"",
        timestamp_ms=raw.timestamp,
        headers=tuple((k, v if v is not None else b"") for k, v in raw.headers or ()),
    )


def _batch_bounds(
    batch: list[ConsumedRecord],
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """First offset and next offset (last + 1) of each partition in ``batch``."""
    first: dict[TopicPartition, int] = {}
    after: dict[TopicPartition, int] = {}
    for record in batch:
        tp = TopicPartition(record.topic, record.partition)
        first[tp] = min(first.get(tp, record.offset), record.offset)
        after[tp] = max(after.get(tp, 0), record.offset + 1)
    return first, after


class ConsumerLoop:
    """Consume ``topics`` as member of ``group_id``, handing each polled batch to ``handler``.

    ``producer`` is used for dead-letter records; without one the loop opens
    its own on the first rejected record and closes it on exit.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topics: list[str],
        group_id: str,
        handler: Handler,
        service: str,
        producer: RecordProducer | None = None,
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.group_id = group_id
        self.handler = handler
        self.service = service
        self.stats = LoopStats()
        self._producer = producer
        self._own_producer = False
        self._stop = threading.Event()
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}
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
        s = self.settings
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=s.bootstrap_servers,
                client_id=f"{self.service}-{self.group_id}",
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=s.kafka_session_timeout_ms,
                heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
                max_poll_records=s.kafka_max_poll_records,
                # Longer than the longest retry backoff plus a slow batch.
                max_poll_interval_ms=300_000,
                request_timeout_ms=s.kafka_request_timeout_ms,
                bootstrap_timeout_ms=s.kafka_request_timeout_ms,
            )
        except KafkaError as exc:
            raise Unavailable(
                f"cannot connect a Kafka consumer to {s.bootstrap_servers}: {exc}"
            ) from exc
        consumer.subscribe(self.topics)
        return consumer

    def _step(self, consumer: KafkaConsumer) -> None:
        if self.stats.last_activity is None and consumer.assignment():
            self.stats.last_activity = time.monotonic()
        try:
            polled = consumer.poll(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self.settings.kafka_max_poll_records
            )
        except KafkaError as exc:
            # The client reconnects by itself; a broken poll is retried, never fatal.
            log.warning("poll failed; retrying", extra={"error": str(exc)})
            self._stop.wait(BACKOFF_FIRST_S)
            return
        batch = [_to_record(raw) for tp in sorted(polled) for raw in polled[tp]]
        if not batch:
            self._commit_pending(consumer)
            return
        self.stats.last_activity = time.monotonic()
        started = time.perf_counter()
        try:
            failures = self.handler(batch)
            self._dead_letter(failures)
        except Exception:
            self._retry_later(consumer, batch)
            return
        self._failed_attempts = 0
        _, after = _batch_bounds(batch)
        self._pending.update({tp: OffsetAndMetadata(off, "", -1) for tp, off in after.items()})
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
        first, _ = _batch_bounds(batch)
        for tp, offset in first.items():
            try:
                consumer.seek(tp, offset)
            except ValueError:
                # Revoked meanwhile: its new owner resumes from the last commit.
                log.info("partition revoked during retry", extra={"partition": str(tp)})
        self._stop.wait(delay)
        self.stats.last_activity = time.monotonic()

    def _dead_letter(self, failures: list[Failure]) -> None:
        """Produce every rejected record to its topic's DLQ and wait for the acknowledgements."""
        if not failures:
            return
        producer = self._dlq_producer()
        futures = []
        for failure in failures:
            topic = self.settings.topics.dlq(failure.record.topic)
            value, headers = dead_letter_message(failure, self.service)
            futures.append(producer.send(topic, failure.record.key, value, headers))
        deadline = time.monotonic() + DLQ_TIMEOUT_S
        try:
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as exc:
            raise Unavailable(f"dead-letter produce failed: {exc}") from exc
        for failure in failures:
            log.warning(
                "record dead-lettered",
                extra={
                    "topic": failure.record.topic,
                    "partition": failure.record.partition,
                    "offset": failure.record.offset,
                    "key": failure.record.key,
                    "error": failure.error,
                },
            )

    def _dlq_producer(self) -> RecordProducer:
        if self._producer is None:
            self._producer = RecordProducer(self.settings, client_id=f"{self.service}-dlq")
            self._own_producer = True
        return self._producer

    def _commit_pending(self, consumer: KafkaConsumer) -> None:
        """Commit the offsets of handled batches; on a transient error keep them for later."""
        if not self._pending:
            return
        offsets = dict(self._pending)
        try:
            consumer.commit(offsets)
        except (CommitFailedError, RebalanceInProgressError) as exc:
            # The group rebalanced: the partitions' new owners redeliver from the last
            # commit, and the upserts make that harmless.
            log.warning("commit rejected after a rebalance", extra={"error": str(exc)})
            self._pending.clear()
            return
        except KafkaError as exc:
            log.warning("commit failed; will retry", extra={"error": str(exc)})
            return
        for tp, meta in offsets.items():
            if self._pending.get(tp) == meta:
                del self._pending[tp]
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
        if self._own_producer and self._producer is not None:
            self._producer.close()
            self._producer = None
            self._own_producer = False
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
