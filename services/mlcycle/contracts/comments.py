"""Comments and votes: the raw records that enter mlcycle, as the collector validates them.

Validated with pydantic at every edge: the REST API, the importers and the
indexer (a record produced straight into a topic by any Kafka client is
checked again before it is stored). Types are strict: an id that is a number
or a text that is a list is rejected with the field named, not coerced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from mlcycle.common.store.base import Document
from mlcycle.contracts.ids import RecordId, joined_id
from mlcycle.contracts.repository import StoredRecord

# Large enough for any real comment, small enough that one record cannot eat a batch.
MAX_TEXT_CHARS = 1_000_000

# Annotator ids of voters that are not crowd workers carry their kind as a prefix.
LF_PREFIX = "lf:"
HUMAN_PREFIX = "human:"
VoterKind = Literal["crowd", "lf", "human"]


def _crowd_voter(annotator_id: str) -> str:
    if annotator_id.startswith((LF_PREFIX, HUMAN_PREFIX)):
        raise ValueError(
            f"annotator ids starting {HUMAN_PREFIX!r} or {LF_PREFIX!r} are reserved for the "
            "labeler's reviewers and labeling functions"
        )
    return annotator_id


# The annotator of a vote from outside: a crowd worker, never a reserved kind of voter.
CrowdAnnotatorId = Annotated[
    RecordId,
    AfterValidator(_crowd_voter),
    # The schema says it too, so generated clients and property tests know the rule.
    Field(json_schema_extra={"pattern": rf"^(?!{HUMAN_PREFIX}|{LF_PREFIX})[^\x00-\x1f]+$"}),
]


def voter_kind(annotator_id: str) -> VoterKind:
    """``lf`` (a labeling function), ``human`` (a reviewer) or ``crowd``."""
    if annotator_id.startswith(LF_PREFIX):
        return "lf"
    if annotator_id.startswith(HUMAN_PREFIX):
        return "human"
    return "crowd"


def _not_a_number(value: Any) -> Any:
    # The schema says an ISO 8601 string: a number would be guessed as epoch seconds.
    if isinstance(value, int | float):
        raise ValueError("a date-time must be an ISO 8601 string, not a number")
    return value


# When a record was made, as an ISO 8601 string (or a datetime in Python).
Timestamp = Annotated[datetime, BeforeValidator(_not_a_number)]


class Comment(BaseModel):
    """A raw comment: the source's own stable id, its text and free metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: RecordId
    text: Annotated[StrictStr, Field(max_length=MAX_TEXT_CHARS)]
    source: StrictStr | None = None
    created_at: Timestamp | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """The Kafka key and store id."""
        return self.id

    def to_message(self) -> tuple[str, bytes]:
        """The (key, value) this comment travels as on ``comments.raw``."""
        return self.id, orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    def to_document(self) -> Document:
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
    created_at: Timestamp | None = None

    @property
    def key(self) -> str:
        """Keyed by the item, so one item's votes stay in one partition."""
        return self.item_id

    @property
    def id(self) -> str:
        """Store id: one vote per worker per item per task, so a re-import overwrites.

        ``<task>:<item>:<annotator>``, hashed when that would be too long for a store id.
        """
        return vote_id(self.task, self.item_id, self.annotator_id)

    def to_message(self) -> tuple[str, bytes]:
        """The (key, value) this vote travels as on ``votes.raw``."""
        return self.item_id, orjson.dumps(self.model_dump(mode="json", exclude_none=True))

    def to_document(self) -> Document:
        """The stored form: the record plus its id."""
        return {"id": self.id, **self.model_dump(mode="json")}


class CrowdVote(Vote):
    """A vote as it enters from outside (REST, ``votes.raw``): reserved voter kinds refused.

    Reviewers' votes (``human:``) come only from the labeler's own ``POST /v1/labels``,
    and labeling functions (``lf:``) vote only inside a label run.
    """

    annotator_id: CrowdAnnotatorId


def vote_id(task: str, item_id: str, annotator_id: str) -> str:
    """The store id of ``annotator_id``'s vote on ``item_id`` for ``task``."""
    return joined_id("vote", task, item_id, annotator_id)


ReviewerName = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[\w.@-]+$")]


class HumanLabel(BaseModel):
    """A reviewer's label for one item (``POST /v1/labels``); it joins as a trusted voter.

    Who the reviewer is comes from the API key when keys are on (its name); the body's
    ``reviewer`` names them only without keys, or with a bare legacy key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: RecordId
    label: StrictInt
    reviewer: ReviewerName | None = Field(
        None,
        description="who labeled: required without API keys; with a named key it is the "
        "key's name (omit it, or give that name)",
    )
    task: RecordId = "toxicity"

    def to_vote(self, reviewer: str | None = None) -> Vote:
        """The vote it is stored and streamed as: annotator ``human:<reviewer>``.

        ``reviewer`` (the caller's key name) takes the place of the body's.
        """
        who = reviewer or self.reviewer
        if not who:
            raise ValueError("a human label needs a reviewer")
        return Vote(
            item_id=self.item_id,
            annotator_id=f"{HUMAN_PREFIX}{who}",
            label=self.label,
            task=self.task,
            source="review",
        )


# -- as stored ------------------------------------------------------------------------------------


class StoredComment(StoredRecord):
    """A comment as the store holds it.

    Other services add fields to a stored comment (the scoring stream its
    latest score); they are kept as they are, so reading and writing a comment
    back never drops what another service wrote.
    """

    model_config = ConfigDict(extra="allow")

    text: str = ""
    source: str | None = None
    created_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class StoredVote(StoredRecord):
    """A vote as the store holds it, under id ``<task>:<item>:<annotator>`` (or its hash)."""

    item_id: str
    annotator_id: str
    label: StrictInt | StrictFloat
    task: str = "toxicity"
    score: StrictFloat | StrictInt | None = None
    synthetic_annotator: bool = False
    source: str | None = None
    created_at: datetime | None = None

    @property
    def voter_kind(self) -> VoterKind:
        """Who cast it: a crowd worker, a labeling function or a human reviewer."""
        return voter_kind(self.annotator_id)
