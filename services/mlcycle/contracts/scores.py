"""Stored scores: the streaming scorer's answer for one comment, on the comment and on a topic.

The stream scores each comment of ``comments.raw`` and writes the score twice,
as the same JSON object:

- on the stored comment, as its ``prediction`` field (:data:`PREDICTION_FIELD`),
  every field the collector-indexer wrote kept;
- on ``scored.comments``, keyed by the comment id, as ``{"id": ..., <the score>}``
  (:class:`ScoredComment`).

``probabilities`` appears only for multi-class models; ``threshold`` is always
there (null for multi-class models). ``scored_at`` is UTC with milliseconds and a
``Z``; the stream always sets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_serializer

from mlcycle.common.store.base import Document
from mlcycle.contracts.comments import RecordId

# The stored comment's field that holds its score.
PREDICTION_FIELD = "prediction"


def utc_now() -> datetime:
    """The current time in UTC, to the millisecond (what ``scored_at`` keeps)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# Fields left out of the JSON when they are None (``threshold`` is always written).
_OPTIONAL = ("probabilities", "scored_at")


class CommentScore(BaseModel):
    """One comment's score by one model version, as the stream stores and produces it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    score: float = Field(description="P(positive class) for binary models, else the top class's")
    label: str = Field(description="the predicted class name")
    threshold: float | None = Field(description="the binary decision threshold; null otherwise")
    model_version: StrictInt = Field(gt=0, description="the model version that scored it")
    transform_version: str = Field(description="the featurizer transform of that version")
    probabilities: dict[str, float] | None = Field(
        default=None, description="per-class probabilities (multi-class models only)"
    )
    scored_at: datetime | None = Field(default=None, description="when the stream scored it (UTC)")

    @field_serializer("scored_at")
    def _iso_millis(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        stamp = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @classmethod
    def on_comment(cls, document: Mapping[str, Any]) -> CommentScore | None:
        """The score on a stored comment document; None when it has none (or not a valid one)."""
        value = document.get(PREDICTION_FIELD)
        if not isinstance(value, dict):
            return None
        try:
            return cls.model_validate(value)
        except ValidationError:
            return None

    def to_document(self) -> Document:
        """The stored form (the comment's ``prediction``); ``probabilities`` only when set."""
        unset = {name for name in _OPTIONAL if getattr(self, name) is None}
        return self.model_dump(mode="json", exclude=unset or None)

    def to_message(self, comment_id: str) -> tuple[str, bytes]:
        """The (key, value) of this score on ``scored.comments``: the comment id, then the score."""
        return comment_id, orjson.dumps({"id": comment_id, **self.to_document()})


class ScoredComment(CommentScore):
    """An event of ``scored.comments`` as a consumer reads it: a comment's id and its score."""

    id: RecordId

    @property
    def key(self) -> str:
        """The Kafka key: the comment id."""
        return self.id
