"""A reviewer taking back a label: the retraction of one human vote, on ``votes.reviewed``.

A reviewer's label is a vote with a fixed id (``<task>:<item>:human:<name>``). Undoing it
sends a :class:`VoteRetraction` for that id on the same topic, keyed by the same item, so
it lands on the vote's partition after the vote: the indexer deletes the stored vote and the
live-label stream relabels the item without it. Applying a retraction twice, or for a vote
already gone, changes nothing. Labeling the item again later writes the vote again (a later
record on the same partition).

Only reviewers' votes can be retracted: crowd votes are data, not decisions.
"""

from __future__ import annotations

from typing import Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlcycle.contracts.comments import HUMAN_PREFIX, Vote, vote_id
from mlcycle.contracts.ids import RecordId
from mlcycle.contracts.messages import decode_record
from mlcycle.contracts.timestamps import Timestamp

# The field only a retraction has: how a record on votes.reviewed says what it is.
RETRACTS = "retracts"


class VoteRetraction(BaseModel):
    """Take back reviewer ``annotator_id``'s vote on ``item_id`` for ``task``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retracts: RecordId = Field(description="the id of the vote taken back")
    item_id: RecordId
    annotator_id: RecordId = Field(description="human:<reviewer>")
    task: RecordId = "toxicity"
    retracted_at: Timestamp | None = None

    @model_validator(mode="after")
    def _names_one_reviewer_vote(self) -> Self:
        if not self.annotator_id.startswith(HUMAN_PREFIX):
            raise ValueError(f"only a reviewer's vote ({HUMAN_PREFIX}<name>) can be retracted")
        expected = vote_id(self.task, self.item_id, self.annotator_id)
        if self.retracts != expected:
            raise ValueError(
                f"retracts {self.retracts!r} is not the id of that vote ({expected!r})"
            )
        return self

    @classmethod
    def of(cls, vote: Vote, retracted_at: Timestamp | None = None) -> VoteRetraction:
        """The retraction of ``vote``."""
        return cls(
            retracts=vote.id,
            item_id=vote.item_id,
            annotator_id=vote.annotator_id,
            task=vote.task,
            retracted_at=retracted_at,
        )

    @property
    def id(self) -> str:
        """The id of the vote it removes."""
        return self.retracts

    def to_message(self) -> tuple[str, bytes]:
        """Keyed by the item like the vote, so it follows the vote on one partition."""
        return self.item_id, orjson.dumps(self.model_dump(mode="json", exclude_none=True))


def decode_reviewed(value: bytes | None) -> Vote | VoteRetraction:
    """A ``votes.reviewed`` record: a reviewer's vote, or the retraction of one.

    Raises :class:`~mlcycle.contracts.messages.InvalidRecord` (dead-lettered by the
    consumer) when it is neither.
    """
    try:
        parsed = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        parsed = None  # decode_record names the JSON error
    is_retraction = isinstance(parsed, dict) and RETRACTS in parsed
    return decode_record(value, VoteRetraction if is_retraction else Vote)
