"""Timestamps as records store them: timezone-aware datetimes written in ISO 8601.

pydantic writes UTC as ``...Z``; the records of mlcycle have always been
written with :meth:`datetime.isoformat` (``...+00:00``). :data:`Timestamp`
keeps that form, so a document rewritten through a typed record stays
byte-for-byte the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer

Timestamp = Annotated[
    datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json")
]


def utc_now() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)
