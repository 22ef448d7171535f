"""Reading an ingest request body into validated records, all or nothing.

Accepted bodies:

* a JSON array of records;
* NDJSON (JSON Lines): one JSON object per line, blank lines ignored;
* a single JSON object, taken as a batch of one (the same bytes are a valid
  one-line NDJSON body, so refusing it would only surprise people).

The format follows ``Content-Type`` when it names NDJSON
(``application/x-ndjson``, ``application/jsonl``, ...); otherwise it is told
by the first non-blank byte (``[`` an array, ``{`` an object or NDJSON).

A batch is validated completely before anything is produced: one invalid
record rejects the whole batch with 422 and a list of what is wrong, each
error with its record index and field path.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from mlcycle.common.errors import InvalidInput, PayloadTooLarge, ValidationFailed
from mlcycle.contracts.comments import Comment, Vote

NDJSON_MEDIA_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
    }
)
# Invalid records listed in a 422 body; the total count is always given.
MAX_REPORTED_ERRORS = 50
_BLANK = b" \t\r\n"

M = TypeVar("M", bound=BaseModel)


def parse_body(body: bytes, content_type: str | None, *, max_records: int) -> list[Any]:
    """The JSON values of a batch body, not yet validated.

    Raises InvalidInput (400) for an empty body, bytes that are not UTF-8 (naming
    the byte offset) or JSON that does not parse (naming line and column);
    ValidationFailed (422) for an empty batch; PayloadTooLarge (413) for more
    than ``max_records`` records.
    """
    start = _first_non_blank(body)
    if start is None:
        raise InvalidInput("request body is empty: send a JSON array of records, or NDJSON")
    if media_type(content_type) in NDJSON_MEDIA_TYPES:
        items = _parse_ndjson(body)
    elif body[start] == ord("["):
        items = _parse_array(body)
    elif body[start] == ord("{"):
        items = _parse_object_or_ndjson(body)
    else:
        _check_utf8(body)
        raise InvalidInput(
            "body must be a JSON array of records, or NDJSON (one JSON object per line)",
            details={"position": start},
        )
    if not items:
        raise ValidationFailed("the batch is empty: send at least one record")
    if len(items) > max_records:
        raise PayloadTooLarge(
            f"the batch has {len(items)} records; at most {max_records} are allowed per request",
            details={"records": len(items), "max_batch_records": max_records},
        )
    return items


def validate_records(model: type[M], items: list[Any]) -> list[M]:
    """Every item validated as ``model``, or ValidationFailed listing each invalid field."""
    try:
        return _list_adapter(model).validate_python(items)
    except ValidationError as exc:
        raise ValidationFailed(
            f"{exc.error_count()} error(s) in the batch; no record was accepted",
            details=describe_record_errors(exc),
        ) from None


def encode_records(records: list[Comment] | list[Vote]) -> list[tuple[str, bytes]]:
    """``(key, compact JSON)`` of each validated record, as every other producer sends it."""
    return [record.to_message() for record in records]


def describe_record_errors(exc: ValidationError) -> dict[str, Any]:
    """``{"errors": [{"index", "field", "message", "type"}], "error_count"}``, without inputs."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    listed = []
    for err in errors[:MAX_REPORTED_ERRORS]:
        index, *path = err["loc"] or (None,)
        listed.append(
            {
                "index": index,
                "field": ".".join(str(part) for part in path) or None,
                "message": err["msg"],
                "type": err["type"],
            }
        )
    return {"errors": listed, "error_count": len(errors)}


def media_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


@functools.cache
def _list_adapter(model: type[M]) -> TypeAdapter[list[M]]:
    # Building an adapter compiles a validator: do it once per model, not per request.
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _first_non_blank(body: bytes) -> int | None:
    stripped = body.lstrip(_BLANK)
    return len(body) - len(stripped) if stripped else None


def _check_utf8(data: bytes, *, base: int = 0) -> None:
    """Raise InvalidInput naming the body offset of the first byte that is not UTF-8.

    ``base`` is where ``data`` starts in the body (an NDJSON line's offset).
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = base + exc.start
        raise InvalidInput(
            f"body is not valid UTF-8 (byte offset {offset})",
            details={"byte_offset": offset, "reason": exc.reason},
        ) from None


def _malformed(exc: orjson.JSONDecodeError, *, line: int | None = None) -> InvalidInput:
    line = exc.lineno if line is None else line
    return InvalidInput(
        f"malformed JSON at line {line}, column {exc.colno}: {exc.msg}",
        details={"line": line, "column": exc.colno, "reason": exc.msg},
    )


def _loads(data: bytes, *, line: int | None = None, base: int = 0) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        _check_utf8(data, base=base)  # a bad byte is reported as such, with its offset
        raise _malformed(exc, line=line) from None


def _parse_array(body: bytes) -> list[Any]:
    value = _loads(body)
    if not isinstance(value, list):
        raise InvalidInput("body must be a JSON array of records")
    return value


def _parse_object_or_ndjson(body: bytes) -> list[Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        # More than one document: NDJSON, parsed line by line for precise errors.
        return _parse_ndjson(body)
    return [value]


def _parse_ndjson(body: bytes) -> list[Any]:
    # Splitting bytes on b"\n" is safe: that byte never occurs inside a UTF-8 sequence.
    items = []
    offset = 0
    for number, line in enumerate(body.split(b"\n"), start=1):
        base, offset = offset, offset + len(line) + 1
        if not line.strip(_BLANK):
            continue
        value = _loads(line, line=number, base=base)
        if not isinstance(value, dict):
            raise InvalidInput(
                f"NDJSON line {number} is not a JSON object", details={"line": number}
            )
        items.append(value)
    return items
