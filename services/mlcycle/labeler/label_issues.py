"""Suspected label errors by confident learning: out-of-sample probabilities, then cleanlab.

A label run's labels come from votes; nothing in the votes says when the crowd (or a
labeling function) was consistently wrong about an item. A classifier trained on the
*texts* can: an item whose label the classifier, never having seen that item, finds very
unlikely is a suspect. This module does that, with no I/O:

1. the labeled items are featurized with the featurizer's current transform (or, before
   the first fit, the default transform fitted on the run's own texts);
2. a logistic regression is cross-validated over ``folds`` stratified, seeded folds, so
   each item's class probabilities come from a model that never saw it;
3. ``cleanlab.filter.find_label_issues`` flags the suspects (``prune_by_noise_rate``: the
   items beyond each class pair's estimated noise rate), and
   ``cleanlab.rank.get_label_quality_scores`` gives each item a label-quality score
   (``self_confidence``: the out-of-sample probability of its label).

Bounded in time: at most ``max_fit_items`` items (a seeded sample beyond that) take part
in the cross-validated fits; every other labeled item is scored by the mean of the folds'
models, none of which saw it, so every labeled item still gets out-of-sample
probabilities and the fits cost the same however large the corpus grows (featurizing and
scoring the rest are linear and cheap).

Items a human reviewed are fitted on (theirs are the best labels) but never flagged.
When the classifier cannot be fit (one class only, a class with a single item) there are
no suspects and :attr:`Suspects.skipped` says why; the run goes on.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from mlcycle.contracts.label_runs import LabelIssue, LabelIssuesSummary
from mlcycle.featurization.inputs import Metadata
from mlcycle.featurization.transform import Transform, fit
from mlcycle.labeler.labeling import Corpus, Labeling

# The classifier's fits. SAGA: on Davidson's n-gram features (25k rows, 60k used columns)
# it reaches lbfgs's accuracy in a third of the time (1.3 s a fit against 3.8 s), and it is
# seeded. It settles in ~20 passes; the cap only bounds a pathological fit.
MAX_ITER = 300
# Inverse regularization: n-gram features are many and each rare; a firmer prior than
# scikit-learn's 1.0 keeps a fold's model from memorizing its training items.
INVERSE_REGULARIZATION = 0.5
# A class the fits' sample would hold fewer than this many items of per fold is fitted on
# in full when the fits sample.
RARE_CLASS_ITEMS = 4


@dataclass(frozen=True)
class FinderLimits:
    """How the finder cross-validates, and how much work it may do."""

    folds: int = 5
    seed: int = 0
    max_fit_items: int = 20_000


@dataclass
class Suspects:
    """What the finder found on ``n`` labeled items (arrays aligned with its inputs)."""

    probs: np.ndarray  # float (n, k): out-of-sample probability of each class
    quality: np.ndarray  # float (n,): label-quality score, low = likely wrong
    suggested: np.ndarray  # int (n,): the class the out-of-sample model prefers
    ranked: np.ndarray  # int: the flagged items, most suspect (lowest quality) first
    fitted_on: int = 0
    folds: int = 0
    seconds: float = 0.0
    skipped: str | None = None

    @classmethod
    def none(cls, n: int, n_classes: int, reason: str) -> Suspects:
        """No suspects among ``n`` items, and why."""
        return cls(
            probs=np.full((n, n_classes), np.nan),
            quality=np.full(n, np.nan),
            suggested=np.full(n, -1, np.int64),
            ranked=np.empty(0, np.int64),
            skipped=reason,
        )


def features(
    transform: Transform, texts: Sequence[str], metadata: Metadata | None = None
) -> sparse.csr_matrix:
    """``texts`` as a scipy CSR matrix of ``transform``'s features."""
    batch = transform.apply(texts, metadata)
    return sparse.csr_matrix(
        (batch.values, batch.indices, batch.indptr), shape=(len(batch), batch.dim)
    )


def cannot_fit(labels: np.ndarray) -> str | None:
    """Why a cross-validated classifier cannot be fit on ``labels``, or None when it can."""
    if len(labels) == 0:
        return "no labeled items"
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        return f"only one class ({int(classes[0])}) among the {len(labels)} labeled items"
    if counts.min() < 2:
        rare = int(classes[np.argmin(counts)])
        return f"class {rare} has a single labeled item: cross-validation needs two of each class"
    return None


def out_of_sample_probs(
    x: sparse.csr_matrix, labels: np.ndarray, n_classes: int, limits: FinderLimits
) -> tuple[np.ndarray, int, int]:
    """Each item's class probabilities from models that never saw it; (probs, fitted, folds).

    The caller checks :func:`cannot_fit` first.
    """
    # Imported here: scikit-learn takes seconds to import, which the labeler's API and CLI
    # would pay at every start, run or no run.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    n = len(labels)
    # Only the columns some item uses: a transform is hundreds of thousands of columns
    # wide, and each fit's cost grows with the width, used or not (10x on small runs).
    x = x[:, np.unique(x.indices)]
    rng = np.random.default_rng(limits.seed)
    fit_rows = np.arange(n)
    if n > limits.max_fit_items:
        sample = rng.choice(n, limits.max_fit_items, replace=False)
        # A class the sample would hold few of is fitted on in full, so no fold lacks it.
        classes, counts = np.unique(labels, return_counts=True)
        expected = counts * limits.max_fit_items / n
        rare = np.flatnonzero(np.isin(labels, classes[expected < RARE_CLASS_ITEMS * limits.folds]))
        fit_rows = np.union1d(sample, rare)
    fit_labels = labels[fit_rows]
    folds = int(min(limits.folds, np.unique(fit_labels, return_counts=True)[1].min()))
    rest = np.setdiff1d(np.arange(n), fit_rows, assume_unique=True)
    probs = np.zeros((n, n_classes))
    rest_sum = np.zeros((len(rest), n_classes))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=limits.seed)
    for train, held in splitter.split(np.zeros(len(fit_rows)), fit_labels):
        model = LogisticRegression(
            C=INVERSE_REGULARIZATION, solver="saga", max_iter=MAX_ITER, random_state=limits.seed
        )
        with warnings.catch_warnings():  # an unconverged fold is still a usable model
            warnings.simplefilter("ignore")
            model.fit(x[fit_rows[train]], fit_labels[train])
        columns = model.classes_.astype(np.int64)
        probs[np.ix_(fit_rows[held], columns)] = model.predict_proba(x[fit_rows[held]])
        if len(rest):
            rest_sum[:, columns] += model.predict_proba(x[rest])
    if len(rest):
        probs[rest] = rest_sum / folds
    return probs, len(fit_rows), folds


def find_suspects(
    x: sparse.csr_matrix,
    labels: np.ndarray,
    n_classes: int,
    *,
    flaggable: np.ndarray | None = None,
    limits: FinderLimits = FinderLimits(),  # noqa: B008 - frozen, so sharing it is safe
) -> Suspects:
    """The items of ``x`` whose ``labels`` look wrong, most suspect first.

    ``flaggable`` (bool per item, default all) leaves some items out of the suspects, not
    out of the fits: the ones a human already decided.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    started = time.perf_counter()
    labels = np.asarray(labels, np.int64)
    reason = cannot_fit(labels)
    if reason is None and x.nnz == 0:
        reason = "no labeled item has a feature (empty texts?)"
    if reason is not None:
        return Suspects.none(len(labels), n_classes, reason)
    probs, fitted_on, folds = out_of_sample_probs(x, labels, n_classes, limits)
    # cleanlab wants every class it is given to be somebody's label: give it the present ones.
    present = np.unique(labels)
    compact = probs[:, present]
    compact /= np.maximum(compact.sum(axis=1, keepdims=True), 1e-12)
    given = np.searchsorted(present, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = find_label_issues(given, compact, filter_by="prune_by_noise_rate", n_jobs=1)
        quality = get_label_quality_scores(given, compact, method="self_confidence")
    if flaggable is not None:
        flagged &= np.asarray(flaggable, bool)
    candidates = np.flatnonzero(flagged)
    ranked = candidates[np.argsort(quality[candidates], kind="stable")]
    return Suspects(
        probs=probs,
        quality=quality,
        suggested=present[np.argmax(compact, axis=1)],
        ranked=ranked,
        fitted_on=fitted_on,
        folds=folds,
        seconds=round(time.perf_counter() - started, 3),
    )


# -- a label run's suspects -------------------------------------------------------------------


@dataclass
class RunIssues:
    """A run's suspects: its summary, its issue records, and a suspicion per corpus item."""

    summary: LabelIssuesSummary
    issues: list[LabelIssue]
    suspicion: np.ndarray  # float per corpus item: 1 - label quality when flagged, else 0
    checked: np.ndarray | None = None  # corpus index of each item the finder saw
    found: Suspects | None = None  # what it found, aligned with ``checked``

    @classmethod
    def none(cls, n_items: int, reason: str, checked: int = 0) -> RunIssues:
        """No suspects among ``n_items`` corpus items, and why."""
        summary = LabelIssuesSummary(checked=checked, skipped=reason)
        return cls(summary, [], np.zeros(n_items))


def find_in_run(
    run_id: str,
    labeling: Labeling,
    corpus: Corpus,
    transform: Transform | None,
    *,
    limits: FinderLimits = FinderLimits(),  # noqa: B008 - frozen, so sharing it is safe
    max_stored: int = 10_000,
) -> RunIssues:
    """The suspects among ``labeling``'s labeled items, the ``max_stored`` most suspect kept.

    ``transform`` is the featurizer's current one; None fits the default transform on
    (a seeded sample of) the labeled texts.
    """
    labels = labeling.result.labels
    checked = np.flatnonzero(labels >= 0)
    n_classes = labeling.result.probs.shape[1]
    texts = [corpus.texts[i] for i in checked]
    metadata = [corpus.metadata[i] for i in checked]
    given = labels[checked].astype(np.int64)
    reason = cannot_fit(given)
    if reason is not None:
        return RunIssues.none(len(corpus), reason, checked=len(checked))
    suspicion = np.zeros(len(corpus))
    if transform is None:
        sample = np.random.default_rng(limits.seed).permutation(len(texts))[: limits.max_fit_items]
        transform = fit([texts[i] for i in sample], [metadata[i] for i in sample])
        source = f"{transform.version} (the default transform, fitted on the run's texts)"
    else:
        source = f"{transform.version} (current)"
    found = find_suspects(
        features(transform, texts, metadata),
        given,
        n_classes,
        flaggable=labeling.human_votes[checked] == 0,
        limits=limits,
    )
    suspicion[checked[found.ranked]] = 1.0 - found.quality[found.ranked]
    issues = [
        LabelIssue(
            id=LabelIssue.id_of(run_id, rank),
            run=run_id,
            rank=rank,
            item_id=corpus.item_ids[checked[i]],
            given_label=int(given[i]),
            suggested_label=int(found.suggested[i]),
            quality=round(float(found.quality[i]), 6),
            probability=round(float(found.probs[i, given[i]]), 6),
            probabilities=[round(float(p), 6) for p in found.probs[i]],
        )
        for rank, i in enumerate(found.ranked[:max_stored])
    ]
    summary = LabelIssuesSummary(
        checked=len(checked),
        fitted_on=found.fitted_on,
        folds=found.folds,
        transform=source,
        suspects=len(found.ranked),
        stored=len(issues),
        skipped=found.skipped,
        seconds=found.seconds,
    )
    return RunIssues(summary, issues, suspicion, checked=checked, found=found)
