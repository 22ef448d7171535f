"""Records as they arrive on a topic: decoding a message value, and errors a dead letter names."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class InvalidRecord(Exception):
    """A consumed record value that is not a valid record; the message says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # a short fixed tally key: empty, json, schema, topic


def decode_record(value: bytes | None, model: type[M]) -> M:
    """The ``model`` record in a topic message's value, or :class:`InvalidRecord`."""
    if not value:
        raise InvalidRecord("empty record value", reason="empty")
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"invalid JSON: {exc}", reason="json") from None
    try:
        return model.model_validate(parsed)
    except ValidationError as exc:
        raise InvalidRecord(f"invalid record: {flat_errors(exc)}", reason="schema") from None


def flat_errors(exc: ValidationError, prefix: str = "") -> str:
    """One line, ``field: message; field: message``, for dead letters and CLI errors."""

    def where(loc: tuple[int | str, ...]) -> str:
        return ".".join(map(str, (prefix, *loc) if prefix else loc)) or "<record>"

    return "; ".join(
        f"{where(err['loc'])}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    )
