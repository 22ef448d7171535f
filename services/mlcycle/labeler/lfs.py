"""Labeling functions: the registry with the starter sets in it, and applying LFs to texts.

A labeling function (LF) is a function ``(text, metadata) -> int`` returning a
class of its task or :data:`~mlcycle.labeler.votes.ABSTAIN`, registered by
name (:mod:`~mlcycle.labeler.lf_registry`). :func:`apply_lfs` runs a set of
them over many comments into an ``(n_items, n_lfs)`` vote array, and
:func:`lf_triplets` turns that array into ``(item_id, "lf:<name>", class)``
votes, so that a label model weighs LFs and crowd workers alike.

An LF that raises, or returns something that is not a class of its task,
abstains on that item; the error is recorded in :class:`LfApplication` and
the run goes on: one bad heuristic must not stop a labeling run.

This module is where the labeler finds its LFs: it assembles the registry and
the starter sets (:data:`STARTER_SETS`, the ``toxicity`` set of
:mod:`~mlcycle.labeler.toxicity_lfs`), and gives LF authors the decorator and
the shared text views in one import.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import LF_PREFIX
from mlcycle.labeler import toxicity_lfs
from mlcycle.labeler.lf_registry import (
    DEFAULT_CLASSES,
    EMPTY_METADATA,
    TASK_CLASSES,
    LabelingFunction,
    labeling_function,
    register,
    register_task,
    registered,
    unregister,
)
from mlcycle.labeler.text_views import TextView, per_text_cache, text_view
from mlcycle.labeler.votes import ABSTAIN

__all__ = [
    "ABSTAIN",
    "STARTER_SETS",
    "TASK_CLASSES",
    "LabelingFunction",
    "LfApplication",
    "LfError",
    "TextView",
    "apply_lfs",
    "labeling_function",
    "lf_triplets",
    "per_text_cache",
    "register",
    "register_task",
    "registered",
    "text_view",
    "unregister",
]

# The LFs registered with the labeler itself, by task: names in registration order.
STARTER_SETS: Mapping[str, tuple[str, ...]] = {toxicity_lfs.TASK: toxicity_lfs.STARTER}
MAX_ERROR_INDICES = 5


@dataclass(frozen=True)
class LfError:
    """What went wrong with one LF during an application."""

    count: int  # items on which it raised or returned an invalid value
    message: str  # the first error, "ExcType: message"
    item_indices: tuple[int, ...]  # the first few item indices concerned


@dataclass(frozen=True)
class LfApplication:
    """The votes of ``names`` (columns) on the applied texts (rows)."""

    votes: np.ndarray  # (n_items, n_lfs) int8, ABSTAIN = -1
    names: tuple[str, ...]
    errors: dict[str, LfError] = field(default_factory=dict)  # only the LFs that failed

    @property
    def n_items(self) -> int:
        return int(self.votes.shape[0])

    def coverage(self) -> dict[str, float]:
        """Share of items each LF voted on (did not abstain)."""
        if self.n_items == 0:
            return {name: 0.0 for name in self.names}
        share = (self.votes != ABSTAIN).mean(axis=0)
        return {name: float(share[j]) for j, name in enumerate(self.names)}


def apply_lfs(
    lfs: Sequence[LabelingFunction],
    texts: Sequence[str],
    metadata: Sequence[Mapping[str, Any]] | None = None,
) -> LfApplication:
    """Run every LF on every text; ``votes[i, j]`` is LF ``j``'s class for text ``i`` or ABSTAIN.

    An LF that raises, or returns anything but ABSTAIN or a class of its
    task (``0 <= class < n_classes``; bools are not classes), abstains on
    that item and is reported in :attr:`LfApplication.errors`.
    """
    names = tuple(lf.name for lf in lfs)
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput(f"labeling functions applied twice: {', '.join(duplicated)}")
    n_items = len(texts)
    if metadata is not None and len(metadata) != n_items:
        raise InvalidInput(f"{len(metadata)} metadata for {n_items} texts")
    metas: Sequence[Mapping[str, Any]] = (
        metadata if metadata is not None else [EMPTY_METADATA] * n_items
    )

    # Non-abstain votes are rare, so they are collected sparsely and written once.
    hit_items: list[list[int]] = [[] for _ in lfs]
    hit_values: list[list[int]] = [[] for _ in lfs]
    failures: dict[int, list[Any]] = {}  # column -> [count, first message, indices]
    columns = [
        (j, lf.fn, TASK_CLASSES.get(lf.task, DEFAULT_CLASSES), hit_items[j], hit_values[j])
        for j, lf in enumerate(lfs)
    ]
    for i, text in enumerate(texts):
        meta = metas[i]
        if meta is None:
            meta = EMPTY_METADATA
        for j, fn, n_classes, items, values in columns:
            try:
                vote = fn(text, meta)
            except Exception as exc:  # an LF is user code: any failure is its abstain
                _fail(failures, j, i, _describe(exc))
                continue
            if vote is ABSTAIN:  # small ints are interned: the common case costs one test
                continue
            if vote.__class__ is not int:
                coerced = _coerce(vote)
                if coerced is None:
                    _fail(failures, j, i, _invalid_message(vote))
                    continue
                vote = coerced
                if vote == ABSTAIN:
                    continue
            if 0 <= vote < n_classes:
                items.append(i)
                values.append(vote)
            elif vote != ABSTAIN:
                _fail(failures, j, i, f"ValueError: returned {vote!r}, not a class or ABSTAIN")

    votes = np.full((n_items, len(lfs)), ABSTAIN, dtype=np.int8)
    for j in range(len(lfs)):
        if hit_items[j]:
            votes[np.asarray(hit_items[j], dtype=np.int64), j] = hit_values[j]
    errors = {
        names[j]: LfError(count=count, message=message, item_indices=tuple(indices))
        for j, (count, message, indices) in sorted(failures.items())
    }
    return LfApplication(votes=votes, names=names, errors=errors)


def _coerce(vote: Any) -> int | None:
    """An integral non-bool vote as an int, else None (numpy integers are accepted)."""
    if isinstance(vote, bool | np.bool_):
        return None
    if isinstance(vote, int | np.integer):
        return int(vote)
    return None


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: Exception) -> str:
    """``"ExcType: message"``, even for an exception whose ``str`` itself fails."""
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    return f"{type(exc).__name__}: {_shorten(message, 500)}"


def _invalid_message(value: Any) -> str:
    try:
        shown = _shorten(repr(value), 80)
    except Exception:
        shown = "<unprintable>"
    return f"TypeError: returned {shown} ({type(value).__name__}), not a class or ABSTAIN"


def _fail(failures: dict[int, list[Any]], column: int, item: int, message: str) -> None:
    record = failures.get(column)
    if record is None:
        failures[column] = [1, message, [item]]
        return
    record[0] += 1
    if len(record[2]) < MAX_ERROR_INDICES:
        record[2].append(item)


def lf_triplets(
    application: LfApplication, item_ids: Sequence[str]
) -> Iterator[tuple[str, str, int]]:
    """``(item_id, "lf:<name>", class)`` for every non-abstain vote, item by item.

    The triplets feed :meth:`VoteMatrix.from_triplets` together with the
    crowd's votes. ``item_ids[i]`` is the id of the ``i``-th applied text.
    """
    if len(item_ids) != application.n_items:
        raise InvalidInput(f"{len(item_ids)} item ids for {application.n_items} labeled items")
    voters = [LF_PREFIX + name for name in application.names]
    rows, cols = np.nonzero(application.votes != ABSTAIN)
    values = application.votes[rows, cols]
    for i, j, value in zip(rows.tolist(), cols.tolist(), values.tolist(), strict=True):
        yield item_ids[i], voters[j], value
