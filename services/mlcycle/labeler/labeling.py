"""One label run's computation, with no I/O: votes and comments in, labels and figures out.

Every voter goes into one :class:`VoteMatrix`: crowd workers, human reviewers
and the selected labeling functions. The run's strategy aggregates them all;
with ``dawid_skene`` or ``anchored_dawid_skene`` that *is* the label model, in
which the crowd and the functions are equally noisy voters whose reliabilities
are learned. A plain majority over the same voters is always computed next to
it as the baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from mlcycle.common.errors import InvalidInput
from mlcycle.common.settings import LabelerSettings
from mlcycle.contracts.comments import HUMAN_PREFIX, StoredComment, voter_kind
from mlcycle.contracts.label_runs import (
    BaselineStats,
    ReviewItem,
    ReviewReason,
    RunParams,
    RunStats,
    VoteCounts,
)
from mlcycle.contracts.labels import Label, Provenance, label_id
from mlcycle.contracts.repositories.votes import CastVote
from mlcycle.contracts.splits import SPLITS, split_of
from mlcycle.labeler.aggregate import LEARNING_STRATEGIES, Aggregate, aggregate
from mlcycle.labeler.diagnostics import gold_labels
from mlcycle.labeler.lfs import LfApplication, apply_lfs, lf_triplets, registered
from mlcycle.labeler.votes import VoteMatrix, class_of

# Full EM with labeling functions among the voters can take a hundred iterations or more
# to settle (each is ~0.04 s at 1.6M votes); anchored Dawid-Skene takes one.
MAX_EM_ITERATIONS = 300


@dataclass
class Corpus:
    """The comments a run labels, in id order."""

    item_ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_comments(cls, comments: Iterable[StoredComment]) -> Corpus:
        """The corpus of ``comments``, in their order."""
        corpus = cls()
        for comment in comments:
            corpus.item_ids.append(comment.id)
            corpus.texts.append(comment.text)
            corpus.metadata.append(dict(comment.metadata))
        return corpus

    def __len__(self) -> int:
        return len(self.item_ids)


@dataclass
class Labeling:
    """Everything a run computed, before anything is written."""

    votes: VoteMatrix
    result: Aggregate
    baseline: Aggregate
    gold: np.ndarray
    splits: list[str]
    human_votes: np.ndarray  # per item
    crowd_votes: np.ndarray  # per item
    lf_application: LfApplication | None
    vote_counts: VoteCounts


def compute(
    corpus: Corpus,
    votes_cast: Iterable[CastVote],
    params: RunParams,
    settings: LabelerSettings,
) -> Labeling:
    """Aggregate the votes on ``corpus`` with ``params.strategy``; nothing is written."""
    n_classes = settings.classes_of(params.task)
    known = set(corpus.item_ids)
    # Plain ints while counting (a model's attribute writes cost ~10x more per vote).
    counts = {"read": 0, "out_of_range": 0, "unknown_item": 0, "used": 0}

    def crowd_triplets() -> Iterable[tuple[str, str, int]]:
        for item_id, annotator_id, value in votes_cast:
            counts["read"] += 1
            label = class_of(value, n_classes)
            if label is None:
                counts["out_of_range"] += 1
            elif item_id not in known:
                counts["unknown_item"] += 1  # kept in the store; labeled once the item arrives
            else:
                counts["used"] += 1
                yield item_id, annotator_id, label

    application = _apply_lfs(corpus, params)
    triplets: list[Iterable[tuple[str, str, int]]] = [crowd_triplets()]
    if application is not None:
        triplets.append(lf_triplets(application, corpus.item_ids))
    votes = VoteMatrix.from_triplets(
        (t for source in triplets for t in source), n_classes, item_ids=corpus.item_ids
    )
    vote_counts = VoteCounts(**counts, lf=int(votes.voter_mask("lf").sum()))

    human_mask = votes.voter_mask("human")
    crowd_mask = votes.voter_mask("crowd")
    fixed = {
        i: settings.human_accuracy
        for i, voter in enumerate(votes.voter_ids)
        if voter.startswith(HUMAN_PREFIX)
    }
    threshold = params.threshold if params.threshold is not None else settings.threshold
    result = aggregate(
        votes, params.strategy, threshold=threshold, fixed_voters=fixed, max_iter=MAX_EM_ITERATIONS
    )
    if params.strategy not in LEARNING_STRATEGIES:
        result = _humans_decide(result, votes.select(human_mask), settings.human_accuracy)
    baseline = aggregate(votes, "majority")
    gold = gold_labels(votes.select(crowd_mask), params.gold_min_votes or settings.gold_min_votes)
    splits = [
        split_of(item, meta, settings.split_fractions)
        for item, meta in zip(corpus.item_ids, corpus.metadata, strict=True)
    ]
    return Labeling(
        votes=votes,
        result=result,
        baseline=baseline,
        gold=gold,
        splits=splits,
        human_votes=np.bincount(votes.items[human_mask], minlength=votes.n_items),
        crowd_votes=np.bincount(votes.items[crowd_mask], minlength=votes.n_items),
        lf_application=application,
        vote_counts=vote_counts,
    )


def _apply_lfs(corpus: Corpus, params: RunParams) -> LfApplication | None:
    if params.labeling_functions == []:
        return None
    lfs = registered(params.task, params.labeling_functions)
    if not lfs:
        if params.labeling_functions:
            raise InvalidInput(f"no labeling functions for task {params.task!r}")
        return None
    return apply_lfs(lfs, corpus.texts, corpus.metadata)


def _humans_decide(result: Aggregate, humans: VoteMatrix, accuracy: float) -> Aggregate:
    """Majority and mean-threshold have no voter weights: a human label simply wins."""
    if humans.n_votes == 0:
        return result
    counts = humans.counts()
    reviewed = counts.sum(axis=1) > 0
    decided = counts.argmax(axis=1)
    k = counts.shape[1]
    probs = result.probs.copy()
    labels = result.labels.copy()
    probs[reviewed] = (1.0 - accuracy) / (k - 1)
    probs[reviewed, decided[reviewed]] = accuracy
    labels[reviewed] = decided[reviewed]
    return Aggregate(
        probs=probs,
        labels=labels,
        n_votes=result.n_votes,
        class_prior=result.class_prior,
        voter_confusion=result.voter_confusion,
        voter_accuracy=result.voter_accuracy,
        iterations=result.iterations,
        converged=result.converged,
    )


# -- outputs ----------------------------------------------------------------------------------


class ProvenanceIndex:
    """Per item, which voters voted: votes sorted by item once, then sliced."""

    def __init__(self, votes: VoteMatrix) -> None:
        order = np.argsort(votes.items, kind="stable")
        self._voters = votes.voters[order]
        self._bounds = np.searchsorted(votes.items[order], np.arange(votes.n_items + 1))
        self._ids = votes.voter_ids
        self._kinds = [voter_kind(v) for v in votes.voter_ids]

    def of(self, item: int) -> Provenance:
        """The voters of item ``item``, by kind, in the order they voted."""
        crowd: list[str] = []
        lfs: list[str] = []
        humans: list[str] = []
        for v in self._voters[self._bounds[item] : self._bounds[item + 1]]:
            kind = self._kinds[v]
            name = self._ids[v]
            if kind == "lf":
                lfs.append(name.split(":", 1)[1])
            elif kind == "human":
                humans.append(name.split(":", 1)[1])
            else:
                crowd.append(name)
        return Provenance(crowd=crowd, labeling_functions=lfs, humans=humans)


def label_records(
    labeling: Labeling,
    corpus: Corpus,
    items: Sequence[int],
    *,
    run_id: str,
    params: RunParams,
    provenance: ProvenanceIndex,
    now: datetime,
) -> list[Label]:
    """The labels of ``items`` (indices into the corpus) that got one."""
    result = labeling.result
    labels = []
    for i in items:
        label = int(result.labels[i])
        if label < 0:
            continue  # no crowd vote, no human, every labeling function abstained
        probs = [round(float(p), 6) for p in result.probs[i]]
        item_id = corpus.item_ids[i]
        labels.append(
            Label(
                id=label_id(run_id, item_id),
                run=run_id,
                item_id=item_id,
                task=params.task,
                label=label,
                probability=probs[label],
                probabilities=probs,
                method=params.strategy,
                n_votes=int(labeling.crowd_votes[i] + labeling.human_votes[i]),
                provenance=provenance.of(i),
                split=labeling.splits[i],
                created_at=now,
            )
        )
    return labels


def summary(labeling: Labeling) -> RunStats:
    """Counts, class balance per split, and the strategy next to the majority baseline."""
    result, baseline, gold = labeling.result, labeling.baseline, labeling.gold
    labeled = result.labels >= 0
    k = result.probs.shape[1]
    splits = np.array(labeling.splits)
    balance = {
        split: {
            str(c): int(np.sum(labeled & (splits == split) & (result.labels == c)))
            for c in range(k)
        }
        for split in SPLITS
    }
    on_gold = gold >= 0
    both = labeled & (baseline.labels >= 0)
    return RunStats(
        items=int(labeling.votes.n_items),
        labeled=int(labeled.sum()),
        unlabeled=int((~labeled).sum()),
        votes=labeling.vote_counts.model_copy(),
        items_with_crowd_votes=int((labeling.crowd_votes > 0).sum()),
        items_with_only_lf_votes=int((labeled & (labeling.crowd_votes == 0)).sum()),
        items_reviewed_by_humans=int((labeling.human_votes > 0).sum()),
        class_balance=balance,
        gold_items=int(on_gold.sum()),
        accuracy_on_gold=_accuracy(result.labels, gold),
        baseline=BaselineStats(
            method="majority",
            accuracy_on_gold=_accuracy(baseline.labels, gold),
            agreement_with_strategy=(
                float(np.mean(result.labels[both] == baseline.labels[both])) if both.any() else None
            ),
        ),
        iterations=int(result.iterations),
        converged=bool(result.converged),
    )


def _accuracy(labels: np.ndarray, gold: np.ndarray) -> float | None:
    on_gold = gold >= 0
    return float(np.mean(labels[on_gold] == gold[on_gold])) if on_gold.any() else None


def review_queue(
    labeling: Labeling, corpus: Corpus, size: int, suspicion: np.ndarray | None = None
) -> list[ReviewItem]:
    """The items a reviewer's look would help most, most useful first, each with its reasons.

    Three kinds of item, one ranking (docs/decisions/0019):

    - ``disagrees_with_moderators``: a human (a reviewer, or a moderator's decision sent on
      as a trusted vote) voted against the label the run gave: the crowd outweighed them.
      These come first (priority 1 + p of the run's label, so the most confident overrides
      lead): either the human erred or the label model does.
    - ``uncertain``: the label model is unsure. Its score is (1 - max p), the chance the
      current hard label is wrong, times 1 / (1 + n_votes), the share of the item's evidence
      one more trusted vote would be: an uncertain item with two votes moves far more than
      an uncertain item with fifty.
    - ``suspected_error``: confident learning flagged the label (``suspicion`` per item:
      1 - its label-quality score for a flagged item, 0 otherwise; see
      :mod:`mlcycle.labeler.label_issues`). Its score is that suspicion: the chance, by a
      classifier of the texts that never saw the item, that its label is wrong.

    Every other item ranks by the larger of its two scores; its reasons name the scores
    that placed it (both when an item is flagged and its uncertainty is the larger).
    Items a human already labeled are left out unless they disagree with that label.
    """
    result = labeling.result
    labeled = result.labels >= 0
    uncertainty = (1.0 - result.probs.max(axis=1)) / (
        1.0 + labeling.crowd_votes + labeling.human_votes
    )
    suspected = np.zeros(len(corpus)) if suspicion is None else np.asarray(suspicion, float)
    disagrees = labeled & _overrides_humans(labeling)
    run_label_p = result.probs[np.arange(len(corpus)), np.maximum(result.labels, 0)]
    priority = np.where(disagrees, 1.0 + run_label_p, np.maximum(uncertainty, suspected))
    eligible = labeled & ((labeling.human_votes == 0) | disagrees)
    candidates = np.flatnonzero(eligible)
    top = candidates[np.argsort(-priority[candidates], kind="stable")[:size]]
    return [
        ReviewItem(
            item_id=corpus.item_ids[i],
            priority=round(float(priority[i]), 6),
            label=int(result.labels[i]),
            probability=round(float(run_label_p[i]), 6),
            n_votes=int(labeling.crowd_votes[i] + labeling.human_votes[i]),
            split=labeling.splits[i],
            reasons=_reasons(bool(disagrees[i]), float(uncertainty[i]), float(suspected[i])),
        )
        for i in top
    ]


def _overrides_humans(labeling: Labeling) -> np.ndarray:
    """Per item: whether the run's label differs from what its human voters chose."""
    humans = labeling.votes.select(labeling.votes.voter_mask("human"))
    if humans.n_votes == 0:
        return np.zeros(labeling.votes.n_items, bool)
    counts = humans.counts()
    return (counts.sum(axis=1) > 0) & (counts.argmax(axis=1) != labeling.result.labels)


def _reasons(disagrees: bool, uncertainty: float, suspicion: float) -> list[ReviewReason]:
    if disagrees:
        return ["disagrees_with_moderators"]
    if suspicion <= 0.0:
        return ["uncertain"]
    if uncertainty >= suspicion:
        return ["uncertain", "suspected_error"]
    return ["suspected_error"]
