"""Scores on stored comments: the ``prediction`` field the streaming scorer adds to each."""

from __future__ import annotations

from collections.abc import Mapping

from mlcycle.common.store import COMMENTS, Store
from mlcycle.contracts.scores import PREDICTION_FIELD, CommentScore


class CommentScores:
    """The stream's scores, kept on the stored comments rather than as records of their own.

    The collector-indexer writes the comments, and a newer version of a comment may be
    stored at any moment; so a score is set as a partial update (the store changes the
    ``prediction`` field in place), never by reading the comment and writing it back,
    which would revert a version stored in between.
    """

    collection = COMMENTS

    def __init__(self, store: Store) -> None:
        self.store = store

    def attach(self, scores: Mapping[str, CommentScore]) -> int:
        """Set the score of each comment (by id) that is stored; how many were.

        A comment that is not in the store is skipped: the indexer refused it.
        """
        changes = {
            comment_id: {PREDICTION_FIELD: score.to_document()}
            for comment_id, score in scores.items()
        }
        return self.store.update_fields(self.collection, changes)

    def get(self, comment_id: str) -> CommentScore | None:
        """The score stored on comment ``comment_id``; None when it has none or is not stored."""
        document = self.store.get(self.collection, comment_id)
        return None if document is None else CommentScore.on_comment(document)
