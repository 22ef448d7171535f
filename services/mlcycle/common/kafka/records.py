"""What a consumer handler receives and what it gives back: records in, rejected records out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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

    @classmethod
    def from_kafka(cls, raw: Any) -> ConsumedRecord:
        """The handler's view of a kafka-python ``ConsumerRecord`` (a missing value is empty)."""
        key = raw.key.decode("utf-8", errors="replace") if raw.key is not None else None
        return cls(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=key,
            value=raw.value if raw.value is not None else b"",
            timestamp_ms=raw.timestamp,
            headers=tuple((k, v if v is not None else b"") for k, v in raw.headers or ()),
        )


@dataclass(frozen=True)
class Failure:
    """A record the handler rejected (it goes to the dead-letter topic), and why."""

    record: ConsumedRecord
    error: str


Handler = Callable[[list[ConsumedRecord]], list[Failure]]
