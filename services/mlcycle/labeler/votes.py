"""Votes as numbers: the sparse (item, voter, class) triplets every aggregation works on.

Crowd workers, labeling functions and human reviewers are all *voters*; the
matrix does not care which is which, so one aggregation (and one label model)
serves them all. Voter ids carry their kind as a prefix for the non-crowd
ones: ``lf:<name>`` for labeling functions, ``human:<who>`` for reviewers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import StoredVote, voter_kind

ABSTAIN = -1


def class_of(label: Any, n_classes: int) -> int | None:
    """The class index of a vote's ``label``, or None when it is out of range.

    Integers (and integral floats such as ``1.0``) in ``[0, n_classes)`` are
    classes; anything else (``0.5``, ``-1``, ``7`` for a binary task, a bool,
    a string) is not a class of this task.
    """
    if isinstance(label, bool) or not isinstance(label, int | float):
        return None
    if isinstance(label, float) and not label.is_integer():
        return None
    value = int(label)
    return value if 0 <= value < n_classes else None


@dataclass(frozen=True)
class VoteMatrix:
    """``n_votes`` votes of ``n_voters`` voters on ``n_items`` items, as parallel arrays.

    ``items[k]``, ``voters[k]`` and ``labels[k]`` describe vote ``k``;
    ``item_ids`` and ``voter_ids`` map the indices back to ids. At most one
    vote per (item, voter): a later vote replaces an earlier one.
    """

    items: np.ndarray  # int32, index into item_ids
    voters: np.ndarray  # int32, index into voter_ids
    labels: np.ndarray  # int16, class index in [0, n_classes)
    item_ids: tuple[str, ...]
    voter_ids: tuple[str, ...]
    n_classes: int

    @property
    def n_votes(self) -> int:
        return int(self.items.shape[0])

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_voters(self) -> int:
        return len(self.voter_ids)

    def votes_per_item(self) -> np.ndarray:
        """How many votes each item has (int32, length ``n_items``)."""
        return np.bincount(self.items, minlength=self.n_items).astype(np.int32)

    def counts(self) -> np.ndarray:
        """Votes per item and class, shape ``(n_items, n_classes)``."""
        flat = self.items.astype(np.int64) * self.n_classes + self.labels
        size = self.n_items * self.n_classes
        return np.bincount(flat, minlength=size).reshape(self.n_items, self.n_classes)

    def select(self, mask: np.ndarray) -> VoteMatrix:
        """The votes where ``mask`` holds; items and voters keep their indices."""
        return VoteMatrix(
            items=self.items[mask],
            voters=self.voters[mask],
            labels=self.labels[mask],
            item_ids=self.item_ids,
            voter_ids=self.voter_ids,
            n_classes=self.n_classes,
        )

    def voter_mask(self, kind: str) -> np.ndarray:
        """Per vote, True when its voter is of ``kind`` (``crowd``, ``lf`` or ``human``)."""
        kinds = np.array([voter_kind(v) == kind for v in self.voter_ids], dtype=bool)
        return kinds[self.voters] if self.n_voters else np.zeros(0, dtype=bool)

    @classmethod
    def from_triplets(
        cls,
        triplets: Iterable[tuple[str, str, int]],
        n_classes: int,
        *,
        item_ids: Sequence[str] = (),
    ) -> VoteMatrix:
        """Build from ``(item_id, voter_id, class)``; ``item_ids`` fixes the first items' order.

        Items in ``item_ids`` appear even with no vote (labeling functions may
        still label them). Repeated (item, voter) pairs keep the last vote.
        """
        if n_classes < 2:
            raise InvalidInput(f"a task needs at least 2 classes, not {n_classes}")
        item_index: dict[str, int] = {item: i for i, item in enumerate(item_ids)}
        voter_index: dict[str, int] = {}
        latest: dict[tuple[int, int], int] = {}
        for item, voter, label in triplets:
            if not 0 <= label < n_classes:
                raise InvalidInput(f"class {label} is outside [0, {n_classes})")
            i = item_index.setdefault(item, len(item_index))
            v = voter_index.setdefault(voter, len(voter_index))
            latest[(i, v)] = label
        n = len(latest)
        items = np.fromiter((k[0] for k in latest), dtype=np.int32, count=n)
        voters = np.fromiter((k[1] for k in latest), dtype=np.int32, count=n)
        labels = np.fromiter(latest.values(), dtype=np.int16, count=n)
        return cls(items, voters, labels, tuple(item_index), tuple(voter_index), n_classes)

    @classmethod
    def from_arrays(
        cls,
        items: np.ndarray,
        voters: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        *,
        item_ids: Sequence[str],
        voter_ids: Sequence[str],
    ) -> VoteMatrix:
        """Build from parallel index arrays, vectorized (for millions of votes).

        ``items[k]`` and ``voters[k]`` index ``item_ids`` and ``voter_ids``.
        As in :meth:`from_triplets`, a repeated (item, voter) pair keeps its
        last vote, at the place of its first.
        """
        if n_classes < 2:
            raise InvalidInput(f"a task needs at least 2 classes, not {n_classes}")
        arrays = [np.asarray(a) for a in (items, voters, labels)]
        if any(a.size and not np.issubdtype(a.dtype, np.integer) for a in arrays):
            raise InvalidInput("items, voters and labels must be integer indices")
        items, voters, labels = (a.astype(np.int64) for a in arrays)
        if not items.shape == voters.shape == labels.shape or items.ndim != 1:
            raise InvalidInput("items, voters and labels must be 1-d arrays of one length")
        for name, values, bound in (
            ("item", items, len(item_ids)),
            ("voter", voters, len(voter_ids)),
            ("class", labels, n_classes),
        ):
            if values.size and (values.min() < 0 or values.max() >= bound):
                raise InvalidInput(f"a {name} index is outside [0, {bound})")
        pair = items * max(len(voter_ids), 1) + voters
        _, first = np.unique(pair, return_index=True)
        _, last_reversed = np.unique(pair[::-1], return_index=True)
        last = len(pair) - 1 - last_reversed
        order = np.argsort(first, kind="stable")
        first, last = first[order], last[order]
        return cls(
            items[first].astype(np.int32),
            voters[first].astype(np.int32),
            labels[last].astype(np.int16),
            tuple(item_ids),
            tuple(voter_ids),
            n_classes,
        )

    @classmethod
    def from_votes(
        cls,
        votes: Iterable[StoredVote],
        n_classes: int,
        *,
        item_ids: Sequence[str] = (),
    ) -> tuple[VoteMatrix, int]:
        """Build from stored votes; returns the matrix and how many were out of range."""
        skipped = 0

        def triplets() -> Iterable[tuple[str, str, int]]:
            nonlocal skipped
            for vote in votes:
                label = class_of(vote.label, n_classes)
                if label is None:
                    skipped += 1
                    continue
                yield vote.item_id, vote.annotator_id, label

        matrix = cls.from_triplets(triplets(), n_classes, item_ids=item_ids)
        return matrix, skipped
