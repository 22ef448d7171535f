"""The records that flow through mlcycle's topics and into its store.

Validated with pydantic at every edge: the REST API, the importers and the
indexer (a record produced straight into a topic by any Kafka client is
checked again before it is stored). Types are strict: an id that is a number
or a text that is a list is rejected with the field named, not coerced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

# Ids become Kafka keys and store keys: non-empty, bounded, no control characters.
RecordId = Annotated[StrictStr, Field(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f]+$")]
# Large enough for any real comment, small enough that one record cannot eat a batch.
MAX_TEXT_CHARS = 1_000_000


class Comment(BaseModel):
    """A raw comment: the source's own stable id, its text and free metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: RecordId
    text: Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS)]
    source: StrictStr | None = None
    created_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """The Kafka key and store id."""
        return self.id

    def to_message(self) -> tuple[str, bytes]:
        """The (key, value) this comment travels as on ``comments.raw``."""
        return self.id, orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    def to_document(self) -> dict[str, Any]:
        """The stored form."""
        return self.model_dump(mode="json")


class Vote(BaseModel):
    """One crowd worker's (or one heuristic's) judgement of one item for one task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: RecordId
    annotator_id: RecordId
    label: StrictInt | StrictFloat
    task: RecordId = "toxicity"
    score: StrictFloat | StrictInt | None = None
    # True when the source published only per-item counts and the annotator id was made up.
    synthetic_annotator: bool = False
    source: StrictStr | None = None
    created_at: datetime | None = None

    @property
    def key(self) -> str:
        """Keyed by the item, so one item's votes stay in one partition."""
        return self.item_id

    @property
    def id(self) -> str:
        """Store id: one vote per worker per item per task, so a re-import overwrites."""
        return f"{self.task}:{self.item_id}:{self.annotator_id}"

    def to_message(self) -> tuple[str, bytes]:
        """The (key, value) this vote travels as on ``votes.raw``."""
        return self.item_id, orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    def to_document(self) -> dict[str, Any]:
        """The stored form: the record plus its id."""
        return {"id": self.id, **self.model_dump(mode="json")}


class Provenance(BaseModel):
    """Which voters a label came from."""

    model_config = ConfigDict(frozen=True)

    crowd: list[str] = Field(default_factory=list, description="annotator ids whose votes counted")
    labeling_functions: list[str] = Field(default_factory=list, description="LFs that voted")
    humans: list[str] = Field(default_factory=list, description="reviewers who labeled the item")


class Label(BaseModel):
    """A label of one item from one label run: hard class, soft probabilities, and why.

    ``probability`` is the soft label's probability of ``label``;
    ``probabilities`` is the whole distribution over the task's classes.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    run: str
    item_id: str
    task: str
    label: int
    probability: float
    probabilities: list[float]
    method: str
    n_votes: int = Field(description="crowd and human votes (labeling functions not counted)")
    provenance: Provenance
    split: str
    created_at: datetime

    def to_message(self) -> tuple[str, bytes]:
        """The (key, value) of this label's event on the ``labels`` topic, keyed by item."""
        return self.item_id, orjson.dumps(self.model_dump(mode="json"))


class HumanLabel(BaseModel):
    """A reviewer's label for one item (``POST /v1/labels``); it joins as a trusted voter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: RecordId
    label: StrictInt
    reviewer: Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[\w.@-]+$")]
    task: RecordId = "toxicity"

    def to_vote(self) -> Vote:
        """The vote it is stored and streamed as: annotator ``human:<reviewer>``."""
        return Vote(
            item_id=self.item_id,
            annotator_id=f"human:{self.reviewer}",
            label=self.label,
            task=self.task,
            source="review",
        )


# -- records as they arrive on a topic --------------------------------------------------------


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
