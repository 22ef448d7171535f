"""Routing rejected records to ``<topic>.dlq``: the record's twin, its error, and the wait for acks.

A rejected record is acknowledged by the dead-letter topic before its batch is
committed, so a record is either handled, or dead-lettered, or redelivered.

:class:`DeadLetter` is the typed value on every ``<topic>.dlq``. It is defined
here, beside the loop that writes it, because ``mlcycle.common`` imports nothing
above it; :mod:`mlcycle.contracts.deadletters` is where readers import it from.
"""

from __future__ import annotations

import base64
import logging
import time
from datetime import UTC, datetime
from typing import Literal

import orjson
from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from mlcycle.common.errors import Unavailable
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.kafka.records import ConsumedRecord, Failure
from mlcycle.common.settings import KafkaSettings

log = logging.getLogger(__name__)

DLQ_TIMEOUT_S = 30.0


class OriginalRecord(BaseModel):
    """The rejected record and where it was; its value as text if UTF-8, else base64."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    key: str | None
    timestamp_ms: int
    value: str
    value_encoding: Literal["utf-8", "base64"]

    @classmethod
    def of(cls, record: ConsumedRecord) -> OriginalRecord:
        """``record`` with its value as text when it is UTF-8, else as base64."""
        encoding: Literal["utf-8", "base64"] = "utf-8"
        try:
            value = record.value.decode("utf-8")
        except UnicodeDecodeError:
            value, encoding = base64.b64encode(record.value).decode("ascii"), "base64"
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            timestamp_ms=record.timestamp_ms,
            value=value,
            value_encoding=encoding,
        )

    def value_bytes(self) -> bytes:
        """The record's value exactly as it was consumed."""
        if self.value_encoding == "base64":
            return base64.b64decode(self.value)
        return self.value.encode("utf-8")


class DeadLetter(BaseModel):
    """The value on ``<topic>.dlq``: the original record, the error, the service and the time."""

    model_config = ConfigDict(frozen=True)

    original: OriginalRecord
    error: str = Field(description="why the service rejected the record")
    service: str = Field(description="the service that rejected it")
    time: datetime = Field(description="when it was rejected (UTC)")

    @classmethod
    def of(cls, failure: Failure, service: str) -> DeadLetter:
        """The dead letter of a record ``service`` rejects now."""
        return cls(
            original=OriginalRecord.of(failure.record),
            error=failure.error,
            service=service,
            time=datetime.now(UTC),
        )

    @field_serializer("time")
    def _utc_milliseconds(self, value: datetime) -> str:
        # 2024-05-01T12:00:00.123Z: milliseconds, and Z rather than +00:00.
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def to_value(self) -> bytes:
        """The JSON message value."""
        return orjson.dumps(self.model_dump(mode="json"))


def dead_letter_message(failure: Failure, service: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers of the dead-letter twin of a rejected record.

    The value is a :class:`DeadLetter` in JSON. The original headers are kept,
    and the error travels in a header too so that tools can filter without
    parsing the value.
    """
    record = failure.record
    headers = [
        *record.headers,
        ("mlcycle-dlq-error", failure.error.encode("utf-8", errors="replace")[:1024]),
        ("mlcycle-dlq-service", service.encode("utf-8")),
        ("mlcycle-dlq-origin", f"{record.topic}/{record.partition}/{record.offset}".encode()),
    ]
    return DeadLetter.of(failure, service).to_value(), headers


class DeadLetterRouter:
    """Sends a service's rejected records to their topics' DLQs and waits for the broker.

    Uses ``producer`` when given; otherwise opens its own on the first rejected
    record and closes it in :meth:`close`.
    """

    def __init__(
        self, kafka: KafkaSettings, service: str, producer: RecordProducer | None = None
    ) -> None:
        self.kafka = kafka
        self.service = service
        self._producer = producer
        self._own_producer = False

    def send(self, failures: list[Failure]) -> None:
        """Produce every rejected record to its topic's DLQ and wait for the acknowledgements.

        Raises :class:`~mlcycle.common.errors.Unavailable` when the broker did not
        take them all, so that the caller commits nothing and retries the batch.
        """
        if not failures:
            return
        producer = self._dlq_producer()
        futures = []
        for failure in failures:
            topic = self.kafka.topics.dlq(failure.record.topic)
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

    def close(self) -> None:
        """Close the producer this router opened (a producer it was given stays open)."""
        if self._own_producer and self._producer is not None:
            self._producer.close()
            self._producer = None
            self._own_producer = False

    def _dlq_producer(self) -> RecordProducer:
        if self._producer is None:
            self._producer = RecordProducer(self.kafka, client_id=f"{self.service}-dlq")
            self._own_producer = True
        return self._producer
