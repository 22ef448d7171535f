"""Diagnostics of a label run: how each voter covers, overlaps, conflicts and scores.

Gold labels are the crowd majority on items with enough crowd votes; every
voter (labeling function, human reviewer or crowd worker) is scored against
them. Everything is computed over the sparse votes with ``bincount`` and
matrix products, never with a Python loop over votes, so a run with millions
of votes and thousands of workers is diagnosed in about a second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.comments import LF_PREFIX, voter_kind
from mlcycle.contracts.label_diagnostics import (
    Calibration,
    CalibrationBin,
    ConflictMatrix,
    DiagnosticsReport,
    GoldSummary,
    LfErrorSummary,
    LfStats,
    Totals,
    VoterStats,
    WorkerSummary,
    WrongSample,
)
from mlcycle.evaluation.calibration import expected_calibration_error, reliability
from mlcycle.labeler.votes import VoteMatrix

NO_GOLD = -1
TEXT_CHARS = 300
# Elements of one dense chunk in conflict_matrix: bounds its memory (~16 MB of float32).
_CHUNK_ELEMENTS = 1 << 22


def gold_labels(crowd: VoteMatrix, min_votes: int = 5) -> np.ndarray:
    """The crowd-majority class of items with at least ``min_votes`` crowd votes, -1 elsewhere.

    Only the crowd workers' votes count (labeling functions and human
    reviewers in ``crowd`` are ignored), and an item whose top classes tie has
    no gold label either: a coin flip is not ground truth.
    """
    if min_votes < 1:
        raise InvalidInput(f"min_votes must be at least 1, not {min_votes}")
    counts = crowd.select(crowd.voter_mask("crowd")).counts()
    return _majority(counts, counts.sum(axis=1) >= min_votes)


def voter_stats(votes: VoteMatrix, gold: np.ndarray) -> list[VoterStats]:
    """The figures of each voter of ``votes``, in voter index order.

    Fields: ``voter_id``, ``name`` (the id without its kind prefix), ``kind``,
    ``n_votes``, ``coverage`` (voted items / all items), ``overlap`` (share of
    its voted items on which some other voter voted too), ``conflict`` (share
    of its voted items on which another voter chose a different class),
    ``accuracy`` (share of its votes on gold items that match the gold label;
    None when it voted on no gold item), ``n_gold`` (those votes) and
    ``class_counts`` (its votes per class). Shares of a voter with no vote are
    None.

    Crowd workers are scored leave-one-out: the reference for a worker's vote
    is the majority of the *other* crowd votes on that gold item (a tie among
    them leaves the vote unscored), so a worker is never graded against a
    majority its own vote helped form. Labeling functions and humans are
    scored against ``gold`` as is. ``gold`` is expected to be
    :func:`gold_labels` of the crowd votes in ``votes``.
    """
    gold = _check_gold(votes, gold)
    return _voter_stats(votes, _references(votes, gold))


def conflict_matrix(votes: VoteMatrix, voter_indices: Sequence[int]) -> np.ndarray:
    """``(m, m)``: for voters ``i`` and ``j``, the share of items both voted on where they differ.

    NaN where two voters share no item; the diagonal is 0 for a voter with
    votes. The cost grows with ``n_items * m**2``: meant for labeling functions
    (tens of voters), not for every crowd worker.
    """
    chosen = np.asarray(voter_indices, dtype=np.int64).reshape(-1)
    if chosen.size == 0:
        return np.zeros((0, 0))
    if chosen.min() < 0 or chosen.max() >= votes.n_voters:
        raise InvalidInput(f"voter indices must be in [0, {votes.n_voters})")
    # Work on the distinct voters, then expand: repeated indices get identical rows.
    distinct, inverse = np.unique(chosen, return_inverse=True)
    u, k = distinct.size, votes.n_classes
    column = np.full(votes.n_voters, -1, dtype=np.int64)
    column[distinct] = np.arange(u)
    cols = column[votes.voters]
    keep = cols >= 0
    cols, labels = cols[keep], votes.labels[keep].astype(np.int64)
    # Renumber the items these voters touched (sorted), so chunks hold only relevant rows.
    touched, rows = np.unique(votes.items[keep], return_inverse=True)
    order = np.argsort(rows, kind="stable")
    rows, cols, labels = rows[order], cols[order], labels[order]

    both = np.zeros((u, u))
    agree = np.zeros((u, u))
    step = max(1, _CHUNK_ELEMENTS // (u * k))
    for lo in range(0, touched.size, step):
        a, b = np.searchsorted(rows, [lo, lo + step])
        onehot = np.zeros((min(step, touched.size - lo), k, u), dtype=np.float32)
        onehot[rows[a:b] - lo, labels[a:b], cols[a:b]] = 1.0
        voted = onehot.sum(axis=1)
        both += voted.T @ voted
        for c in range(k):
            agree += onehot[:, c].T @ onehot[:, c]
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(both > 0, (both - agree) / both, np.nan)
    return values[np.ix_(inverse, inverse)]


def wrong_samples(
    votes: VoteMatrix,
    gold: np.ndarray,
    voter: int,
    texts: Mapping[str, str],
    k: int = 5,
    seed: int = 0,
) -> list[WrongSample]:
    """Up to ``k`` items, drawn at random with ``seed``, where ``voter``'s vote differs from gold.

    Each has the item id, its text cut to about
    300 characters ("" when unknown). A crowd worker is compared leave-one-out,
    as in :func:`voter_stats`, so these are exactly the votes its accuracy
    counts as wrong.
    """
    gold = _check_gold(votes, gold)
    if not 0 <= voter < votes.n_voters:
        raise InvalidInput(f"voter index {voter} is outside [0, {votes.n_voters})")
    return _wrong_samples(votes, _references(votes, gold), voter, texts, k, seed)


def run_diagnostics(
    votes: VoteMatrix,
    *,
    probs: np.ndarray,
    gold: np.ndarray,
    texts: Mapping[str, str],
    lf_errors: Mapping[str, LfErrorSummary] = {},  # noqa: B006 - read only
    max_workers: int = 50,
    n_bins: int = 10,
    min_votes: int | None = None,
) -> DiagnosticsReport:
    """The whole diagnostics report of a label run (shares that cannot be measured are None).

    ``probs`` are the run's soft labels ``(n_items, n_classes)`` (or P(class 1)
    for a binary task), ``gold`` the gold labels (:func:`gold_labels`),
    ``texts`` item id -> text for the wrong samples, ``lf_errors`` LF name ->
    what went wrong applying it, and ``min_votes`` the threshold ``gold`` was
    built with (reported only). Keys: ``totals``, ``gold``,
    ``labeling_functions`` (stats plus ``wrong_samples`` and ``errors``;
    failing LFs that cast no vote are listed too), ``workers`` (a summary over
    all crowd workers and the ``max_workers`` with most votes under ``top``),
    ``humans``, ``conflict_matrix`` (between LFs) and ``calibration``.
    """
    gold = _check_gold(votes, gold)
    refs = _references(votes, gold)
    stats = _voter_stats(votes, refs)
    by_kind: dict[str, list[int]] = {"lf": [], "crowd": [], "human": []}
    for index, entry in enumerate(stats):
        by_kind[entry.kind].append(index)

    errors = {str(name).removeprefix(LF_PREFIX): error for name, error in lf_errors.items()}
    lf_indices = sorted(by_kind["lf"], key=lambda index: stats[index].name)
    lfs = [
        LfStats(
            **stats[index].model_dump(),
            wrong_samples=_wrong_samples(votes, refs, index, texts, 5, 0),
            errors=errors.get(stats[index].name),
        )
        for index in lf_indices
    ]
    seen = {entry.name for entry in lfs}
    # An LF that failed on every item cast no vote, yet it is the one most worth showing.
    for name in sorted(set(errors) - seen):
        empty = _empty_stats(LF_PREFIX + name, votes.n_classes)
        lfs.append(LfStats(**empty.model_dump(), errors=errors[name]))
    matrix = np.full((len(lfs), len(lfs)), np.nan)
    if lf_indices:
        present = list(range(len(lf_indices)))  # the LFs with votes come first
        matrix[np.ix_(present, present)] = conflict_matrix(votes, lf_indices)

    return DiagnosticsReport(
        totals=Totals(
            items=votes.n_items,
            votes=votes.n_votes,
            classes=votes.n_classes,
            voters={kind: len(indices) for kind, indices in by_kind.items()},
        ),
        gold=GoldSummary(items=int((gold >= 0).sum()), min_votes=min_votes),
        labeling_functions=lfs,
        workers=_workers([stats[i] for i in by_kind["crowd"]], max_workers),
        humans=[stats[i] for i in by_kind["human"]],
        conflict_matrix=ConflictMatrix(
            voters=[entry.name for entry in lfs],
            values=[[_finite(value) for value in row] for row in matrix.tolist()],
        ),
        calibration=_calibration(probs, gold, votes.n_classes, n_bins),
    )


# --------------------------------------------------------------------------- internals


def _check_gold(votes: VoteMatrix, gold: np.ndarray) -> np.ndarray:
    gold = np.asarray(gold)
    if gold.shape != (votes.n_items,):
        raise InvalidInput(f"gold has shape {gold.shape}, expected ({votes.n_items},)")
    return gold.astype(np.int64, copy=False)


def _majority(counts: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Per row, the argmax class where ``eligible`` and the maximum is unique, else -1."""
    top = counts.max(axis=1) if counts.shape[0] else np.zeros(0, dtype=counts.dtype)
    unique = (counts == top[:, None]).sum(axis=1) == 1
    return np.where(eligible & unique, counts.argmax(axis=1), NO_GOLD).astype(np.int64)


def _references(votes: VoteMatrix, gold: np.ndarray) -> np.ndarray:
    """Per vote, the class it is graded against (-1: not graded); crowd votes leave-one-out."""
    refs = gold[votes.items]
    is_crowd = votes.voter_mask("crowd")
    crowd = np.flatnonzero(is_crowd & (refs >= 0))
    if crowd.size:
        counts = votes.select(is_crowd).counts()
        others = counts[votes.items[crowd]]
        others[np.arange(crowd.size), votes.labels[crowd]] -= 1
        refs[crowd] = _majority(others, np.ones(crowd.size, dtype=bool))
    return refs


def _voter_stats(votes: VoteMatrix, refs: np.ndarray) -> list[VoterStats]:
    n, k = votes.n_voters, votes.n_classes
    voters, items, labels = votes.voters, votes.items, votes.labels.astype(np.int64)
    per_item = votes.votes_per_item()
    shared = per_item[items] > 1
    # Another voter chose a different class iff this class has fewer votes than the item.
    differs = votes.counts()[items, labels] < per_item[items]
    graded = refs >= 0
    n_votes = np.bincount(voters, minlength=n)
    n_overlap = np.bincount(voters[shared], minlength=n)
    n_conflict = np.bincount(voters[differs], minlength=n)
    n_gold = np.bincount(voters[graded], minlength=n)
    n_right = np.bincount(voters[graded & (labels == refs)], minlength=n)
    per_class = np.bincount(voters.astype(np.int64) * k + labels, minlength=n * k).reshape(n, k)

    stats = []
    for v, voter_id in enumerate(votes.voter_ids):
        cast = int(n_votes[v])
        stats.append(
            VoterStats(
                voter_id=voter_id,
                name=_name(voter_id),
                kind=voter_kind(voter_id),
                n_votes=cast,
                coverage=cast / votes.n_items if votes.n_items else None,
                overlap=float(n_overlap[v] / cast) if cast else None,
                conflict=float(n_conflict[v] / cast) if cast else None,
                accuracy=float(n_right[v] / n_gold[v]) if n_gold[v] else None,
                n_gold=int(n_gold[v]),
                class_counts=per_class[v].tolist(),
            )
        )
    return stats


def _empty_stats(voter_id: str, n_classes: int) -> VoterStats:
    return VoterStats(
        voter_id=voter_id,
        name=_name(voter_id),
        kind=voter_kind(voter_id),
        n_votes=0,
        coverage=0.0,
        overlap=None,
        conflict=None,
        accuracy=None,
        n_gold=0,
        class_counts=[0] * n_classes,
    )


def _name(voter_id: str) -> str:
    kind = voter_kind(voter_id)
    return voter_id.split(":", 1)[1] if kind != "crowd" else voter_id


def _wrong_samples(
    votes: VoteMatrix,
    refs: np.ndarray,
    voter: int,
    texts: Mapping[str, str],
    k: int,
    seed: int,
) -> list[WrongSample]:
    wrong = np.flatnonzero((votes.voters == voter) & (refs >= 0) & (votes.labels != refs))
    if wrong.size > k:
        picked = np.random.default_rng(seed).choice(wrong.size, size=k, replace=False)
        wrong = wrong[np.sort(picked)]
    samples = []
    for index in wrong.tolist():
        item_id = votes.item_ids[votes.items[index]]
        samples.append(
            WrongSample(
                item_id=item_id,
                text=_truncate(str(texts.get(item_id) or "")),
                vote=int(votes.labels[index]),
                gold=int(refs[index]),
            )
        )
    return samples


def _truncate(text: str, limit: int = TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _workers(workers: list[VoterStats], max_workers: int) -> WorkerSummary:
    """A summary over all crowd workers, plus the ``max_workers`` with most votes."""
    n_votes = np.array([w.n_votes for w in workers], dtype=np.int64)
    scored = [w for w in workers if w.accuracy is not None]
    accuracy = np.array([w.accuracy for w in scored], dtype=float)
    graded = sum(w.n_gold for w in scored)
    right = sum((w.accuracy or 0.0) * w.n_gold for w in scored)
    # Most votes first; ties by id so that the report is stable from run to run.
    top = sorted(workers, key=lambda w: (-w.n_votes, w.voter_id))[: max(0, max_workers)]
    return WorkerSummary(
        count=len(workers),
        votes=int(n_votes.sum()),
        median_votes=float(np.median(n_votes)) if workers else None,
        mean_votes=float(n_votes.mean()) if workers else None,
        with_gold=len(scored),
        median_accuracy=float(np.median(accuracy)) if scored else None,
        mean_accuracy=float(accuracy.mean()) if scored else None,
        pooled_accuracy=right / graded if graded else None,
        top=top,
    )


def _calibration(probs: np.ndarray, gold: np.ndarray, n_classes: int, n_bins: int) -> Calibration:
    """Top-label reliability of the soft labels on the gold items, and their ECE."""
    probs = np.asarray(probs, dtype=float)
    if probs.ndim == 1:  # P(class 1) of a binary task
        probs = np.column_stack([1.0 - probs, probs])
    if probs.shape != (gold.shape[0], n_classes):
        raise InvalidInput(
            f"probs has shape {probs.shape}, expected ({gold.shape[0]}, {n_classes})"
        )
    usable = (gold >= 0) & np.isfinite(probs).all(axis=1)
    if not usable.any():
        return Calibration(items=0, bins=[], ece=None)
    # Rounding can leave a probability a hair outside [0, 1], which calibration refuses.
    probs, gold = np.clip(probs[usable], 0.0, 1.0), gold[usable]
    bins = reliability(probs, gold, n_bins=n_bins)
    return Calibration(
        items=int(usable.sum()),
        bins=[
            CalibrationBin(
                lower=float(bins.edges[b]),
                upper=float(bins.edges[b + 1]),
                confidence=_finite(bins.confidence[b]),
                accuracy=_finite(bins.accuracy[b]),
                count=int(bins.count[b]),
            )
            for b in range(len(bins.count))
        ],
        ece=_finite(expected_calibration_error(probs, gold, n_bins=n_bins)),
    )


def _finite(value: float | None) -> float | None:
    """A finite float, or None for NaN, infinities and None (strict JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
