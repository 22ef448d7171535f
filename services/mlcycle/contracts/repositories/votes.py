"""Votes in the ``votes`` collection: one per annotator per item per task."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from mlcycle.common.store import VOTES
from mlcycle.common.store.base import Filters
from mlcycle.contracts.comments import StoredVote
from mlcycle.contracts.label_runs import ReviewItem
from mlcycle.contracts.repository import Repository

# One item's votes read at most (a crowd item has a handful; reviewers add one each).
MAX_ITEM_VOTES = 1000


class CastVote(NamedTuple):
    """The three fields aggregation needs, read without building a record (millions per run)."""

    item_id: str
    annotator_id: str
    label: object


class Votes(Repository[StoredVote]):
    """Crowd, reviewer and labeling-function votes."""

    collection = VOTES
    record_type = StoredVote
    noun = "vote"

    def of_item(
        self, item_id: str, task: str | None = None, limit: int = MAX_ITEM_VOTES
    ) -> list[StoredVote]:
        """Up to ``limit`` votes on ``item_id`` (of ``task`` only, when given), in id order."""
        return self.page(filters=_item_filters(item_id, task), limit=limit).items

    def all_of_item(self, item_id: str) -> Iterator[StoredVote]:
        """Every vote on ``item_id``, of every task."""
        return self.scan({"item_id": item_id})

    def count_of_item(self, item_id: str, task: str | None = None) -> int:
        """How many votes ``item_id`` has (of ``task`` only, when given)."""
        return self.count(_item_filters(item_id, task))

    def reviewed(self, item_id: str) -> bool:
        """Whether a human reviewer voted on ``item_id``."""
        return any(vote.voter_kind == "human" for vote in self.of_item(item_id))

    def awaits_review(self, entry: ReviewItem) -> bool:
        """Whether a review-queue entry still waits for a reviewer.

        A reviewed item leaves the queue at once; one whose label overrode a human's stays
        until the next run (it was in because of its human votes).
        """
        return "disagrees_with_moderators" in entry.reasons or not self.reviewed(entry.item_id)

    def cast(self, task: str, batch_size: int = 5000) -> Iterator[CastVote]:
        """Every vote of ``task`` as (item, annotator, label), streamed in id order."""
        for doc in self.store.scan(self.collection, {"task": task}, batch_size):
            yield CastVote(doc["item_id"], doc["annotator_id"], doc.get("label"))


def _item_filters(item_id: str, task: str | None) -> Filters:
    return {"item_id": item_id} if task is None else {"item_id": item_id, "task": task}
