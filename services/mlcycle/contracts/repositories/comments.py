"""Comments in the ``comments`` collection: by id, in bulk, and by full-text search."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mlcycle.common.store import COMMENTS
from mlcycle.contracts.comments import StoredComment
from mlcycle.contracts.repository import Repository

# How many ids one bulk read asks the store for.
READ_BATCH = 1000


@dataclass(frozen=True)
class CommentPage:
    """One page of a comment search; ``total`` when the store counts matches (else None)."""

    items: list[StoredComment]
    next_cursor: str | None = None
    total: int | None = None


class Comments(Repository[StoredComment]):
    """Comments as the collector's indexer stored them (plus what other services added)."""

    collection = COMMENTS
    record_type = StoredComment
    # Missing comments are reported as "no comment with id 'x'".
    noun = "comment with id"

    def in_order(self, item_ids: Sequence[str]) -> Iterator[StoredComment]:
        """The stored comments among ``item_ids``, in the order of ``item_ids``, read in batches."""
        for start in range(0, len(item_ids), READ_BATCH):
            batch = item_ids[start : start + READ_BATCH]
            found = self.get_many(batch)
            for item_id in batch:
                comment = found.get(item_id)
                if comment is not None:
                    yield comment

    def search(
        self,
        query: str | None = None,
        *,
        source: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> CommentPage:
        """Comments matching the full-text ``query`` (by relevance) or all of them (by id)."""
        filters = {"source": source} if source is not None else None
        found = self.store.search(
            self.collection, query=query, filters=filters, limit=limit, cursor=cursor
        )
        items = [StoredComment.model_validate(doc) for doc in found.items]
        return CommentPage(items=items, next_cursor=found.next_cursor, total=found.total)
