"""The dead-letter record: its JSON on ``<topic>.dlq`` field by field, and reading it back."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import orjson

from mlcycle.common.kafka.consumer import ConsumedRecord, Failure
from mlcycle.common.kafka.deadletter import dead_letter_message
from mlcycle.contracts.deadletters import DeadLetter, OriginalRecord


def _failure(value: bytes, key: str | None = "c1") -> Failure:
    record = ConsumedRecord("comments.raw", 2, 17, key, value, 1_700_000_000_123, (("h", b"v"),))
    return Failure(record, "invalid JSON: unexpected end")


def test_the_value_is_the_documented_json_in_its_field_order() -> None:
    value, _ = dead_letter_message(_failure(b'{"id": "c1", "text": '), "collector-indexer")

    letter = orjson.loads(value)
    assert list(letter) == ["original", "error", "service", "time"]
    assert letter["original"] == {
        "topic": "comments.raw",
        "partition": 2,
        "offset": 17,
        "key": "c1",
        "timestamp_ms": 1_700_000_000_123,
        "value": '{"id": "c1", "text": ',
        "value_encoding": "utf-8",
    }
    assert list(letter["original"]) == [
        "topic",
        "partition",
        "offset",
        "key",
        "timestamp_ms",
        "value",
        "value_encoding",
    ]
    assert letter["error"] == "invalid JSON: unexpected end"
    assert letter["service"] == "collector-indexer"
    # UTC with milliseconds and a Z, e.g. 2024-05-01T12:00:00.123Z.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", letter["time"])
    sent = datetime.fromisoformat(letter["time"])
    assert abs((datetime.now(UTC) - sent).total_seconds()) < 60


def test_a_value_that_is_not_utf8_travels_as_base64_and_reads_back_exactly() -> None:
    value, _ = dead_letter_message(_failure(b"\xff\xfe\x00", key=None), "labeler")

    original = orjson.loads(value)["original"]
    assert original["value_encoding"] == "base64" and original["key"] is None
    assert base64.b64decode(original["value"]) == b"\xff\xfe\x00"
    letter = DeadLetter.model_validate_json(value)
    assert letter.original.value_bytes() == b"\xff\xfe\x00"
    assert letter.time.tzinfo is not None


def test_reading_a_dead_letter_back_gives_the_same_json() -> None:
    value, _ = dead_letter_message(_failure("café".encode()), "featurizer")

    letter = DeadLetter.model_validate_json(value)
    assert letter.original == OriginalRecord.of(_failure("café".encode()).record)
    assert letter.original.value_bytes() == "café".encode()
    assert letter.to_value() == value


def test_the_headers_keep_the_original_ones_and_name_error_service_and_origin() -> None:
    failure = _failure(b"{}")
    _, headers = dead_letter_message(Failure(failure.record, "x" * 5000), "inference")

    named = dict(headers)
    assert headers[0] == ("h", b"v")
    assert named["mlcycle-dlq-error"] == b"x" * 1024
    assert named["mlcycle-dlq-service"] == b"inference"
    assert named["mlcycle-dlq-origin"] == b"comments.raw/2/17"
