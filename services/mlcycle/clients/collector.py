"""The collector's REST API: comments and votes in, comments and counts back out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from mlcycle.clients.base import ServiceClient
from mlcycle.contracts.comments import Comment, StoredComment, Vote

COMMENTS_PATH = "/v1/comments"
VOTES_PATH = "/v1/votes"
JSON = {"content-type": "application/json"}


class Accepted(BaseModel):
    """A batch the broker acknowledged, every record of it."""

    accepted: int


class CommentPage(BaseModel):
    """One page of a comment search; pass ``next_cursor`` back as ``cursor``.

    Items are stored comments: they keep what other services added (the scoring
    stream's ``prediction``), which a new :class:`Comment` may not carry.
    """

    items: list[StoredComment]
    next_cursor: str | None = None
    total: int | None = None


class Stats(BaseModel):
    """Documents per store collection."""

    counts: dict[str, int]

    def count(self, collection: str) -> int:
        """Documents in ``collection`` (0 before the first is stored)."""
        return self.counts.get(collection, 0)


Records = Sequence[Comment | Vote | Mapping[str, Any]] | bytes


class CollectorClient(ServiceClient):
    """``/v1/comments``, ``/v1/votes`` and ``/v1/stats`` of the collector."""

    service = "collector service"
    start_command = "mlcycle collector api"

    def post_comments(self, comments: Records, *, timeout_s: float | None = None) -> Accepted:
        """Send a batch of comments (records, or a JSON array already serialized)."""
        return self._post_batch(COMMENTS_PATH, comments, timeout_s)

    def post_votes(self, votes: Records, *, timeout_s: float | None = None) -> Accepted:
        """Send a batch of crowd votes (records, or a JSON array already serialized)."""
        return self._post_batch(VOTES_PATH, votes, timeout_s)

    def comment(self, comment_id: str) -> StoredComment:
        """One stored comment (with what other services added to it), or NotFound."""
        return self.call_record(StoredComment, "GET", f"{COMMENTS_PATH}/{quote(comment_id)}")

    def search(
        self,
        query: str | None = None,
        *,
        source: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> CommentPage:
        """One page of stored comments, matching the full-text ``query`` when given."""
        params = {"q": query, "source": source, "limit": limit, "cursor": cursor}
        given = {k: v for k, v in params.items() if v is not None}
        return self.call_record(CommentPage, "GET", COMMENTS_PATH, params=given)

    def stats(self, *, timeout_s: float | None = None) -> Stats:
        """Document counts per collection."""
        return self.call_record(Stats, "GET", "/v1/stats", timeout_s=timeout_s)

    def _post_batch(self, path: str, records: Records, timeout_s: float | None) -> Accepted:
        if isinstance(records, bytes):
            return self.call_record(
                Accepted, "POST", path, content=records, headers=JSON, timeout_s=timeout_s
            )
        body = [
            r.model_dump(mode="json", exclude_none=True) if isinstance(r, Comment | Vote) else r
            for r in records
        ]
        return self.call_record(Accepted, "POST", path, json=body, timeout_s=timeout_s)
