"""Reviewers' labels and their retractions, sent to ``votes.reviewed``: one path for the REST
API (``POST /v1/labels``) and the console.

A label becomes a trusted vote ``human:<reviewer>``; the reviewer is the caller's key name
when keys are on (see :func:`mlcycle.common.keys.reviewer_of`). A retraction takes back that
reviewer's own vote on one item (the console's undo); the indexer deletes the vote and the
live-label stream relabels the item without it (:mod:`mlcycle.contracts.retractions`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from mlcycle.common.errors import InvalidInput
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.keys import Caller
from mlcycle.common.keys import reviewer_of as reviewer_named
from mlcycle.common.settings import LabelerSettings
from mlcycle.contracts.comments import HumanLabel
from mlcycle.contracts.retractions import VoteRetraction
from mlcycle.contracts.timestamps import utc_now
from mlcycle.labeler.votes import class_of


class HumanLabelsAccepted(BaseModel):
    """The labels are in Kafka as trusted votes (``human:<reviewer>``)."""

    accepted: int
    votes: list[str]
    reviewers: list[str] = Field(description="who each label is recorded as, in order")


def reviewer_of(label: HumanLabel, caller: Caller, keys_required: bool) -> str:
    """Who a human label is recorded as (see :func:`mlcycle.common.keys.reviewer_of`)."""
    return reviewer_named(label.reviewer, caller, keys_required)


class HumanLabels:
    """Sends reviewers' votes, and retractions of them, to the reviewed-votes topic."""

    def __init__(
        self,
        settings: LabelerSettings,
        producer: RecordProducer,
        *,
        topic: str,
        keys_required: bool,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.topic = topic
        self.keys_required = keys_required

    def submit(self, batch: Sequence[HumanLabel], caller: Caller) -> HumanLabelsAccepted:
        """Check every label is a class of its task, then send them all (400 names the first
        bad one; nothing is sent then)."""
        if not batch:
            raise InvalidInput("the batch is empty: send at least one label")
        for index, label in enumerate(batch):
            n_classes = self.settings.classes_of(label.task)
            if class_of(label.label, n_classes) is None:
                raise InvalidInput(
                    f"label {label.label} is not a class of task {label.task!r} "
                    f"(0 to {n_classes - 1})",
                    details={"index": index},
                )
        reviewers = [reviewer_of(label, caller, self.keys_required) for label in batch]
        votes = [label.to_vote(who) for label, who in zip(batch, reviewers, strict=True)]
        self.producer.send_batch(self.topic, (vote.to_message() for vote in votes))
        return HumanLabelsAccepted(
            accepted=len(votes), votes=[vote.id for vote in votes], reviewers=reviewers
        )

    def retract(
        self, item_id: str, task: str, caller: Caller, reviewer: str | None = None
    ) -> VoteRetraction:
        """Take back the caller's own label of ``item_id`` (a no-op downstream if none)."""
        who = reviewer_named(reviewer, caller, self.keys_required)
        # The vote the label was sent as: its id is all the retraction needs.
        vote = HumanLabel(item_id=item_id, label=0, task=task, reviewer=who).to_vote(who)
        retraction = VoteRetraction.of(vote, retracted_at=utc_now())
        self.producer.send_batch(self.topic, [retraction.to_message()])
        return retraction
