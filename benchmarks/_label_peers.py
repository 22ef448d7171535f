"""The labels benchmark's peers, run on the very kept votes mlcycle's strategies see.

- crowd-kit (``crowdkit.aggregation``): ``DawidSkene``, ``GLAD``, ``MACE`` and
  ``Wawa`` over the kept crowd votes, with their default settings (MACE's
  ``random_state`` is the seed).
- Snorkel's ``LabelModel`` over the kept crowd votes *and* the labeling
  functions' votes: the voters of mlcycle's ``lfs_crowd``. Trained with
  Snorkel's defaults (100 epochs of SGD), the seed as its seed. It needs a dense
  items x voters matrix, so a dataset with more cells than ``DENSE_CELLS``
  (Davidson: one synthetic annotator per vote) is not run, and says so.
- cleanlab's CROWDLAB (``get_label_quality_multiannotator``) over the kept
  crowd votes and a classifier's out-of-sample probabilities (below); also a
  dense items x annotators matrix, under the same cap. Its hard label is the
  consensus label it returns; its soft label is the weighted average it
  computes internally, rebuilt from the weights and agreement it returns.
- the classifier: logistic regression on the featurizer's default transform
  (``FeatureConfig()``, fitted on the dataset's texts alone, no metadata),
  5-fold cross-validated predictions over the items with a kept vote, fitted
  against the majority of their *kept* votes: never the gold or hidden votes.

A peer that fails is reported with its error and scored as null; the others go on.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy import sparse

from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.transform import fit as fit_transform
from mlcycle.labeler.aggregate import aggregate
from mlcycle.labeler.votes import VoteMatrix

PEERS = ("crowdkit_ds", "crowdkit_glad", "crowdkit_mace", "crowdkit_wawa", "snorkel", "crowdlab")
# Snorkel and CROWDLAB take a dense items x voters matrix: above this many cells (~400 MB
# as float64) they are not run.
DENSE_CELLS = 50_000_000
FOLDS = 5
SNORKEL_EPOCHS = 100  # LabelModel.fit's default


@dataclass(frozen=True)
class PeerResult:
    """One peer's soft and hard labels over all items, or why it has none."""

    probs: np.ndarray | None  # (n_items, 2)
    labels: np.ndarray | None  # (n_items,), -1 where the peer gave no label
    seconds: float
    error: str | None = None


def run_peer(fn: Callable[[], tuple[np.ndarray, np.ndarray]]) -> PeerResult:
    """Time ``fn``; any exception becomes the result's error instead of ending the run."""
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probs, labels = fn()
    except Exception as exc:  # noqa: BLE001 - a peer's failure is a figure, not a crash
        return PeerResult(None, None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    return PeerResult(probs, labels, time.perf_counter() - started)


def run_peers(
    kept: VoteMatrix, with_lfs: VoteMatrix, pred_probs: np.ndarray, seed: int, skip: set[str]
) -> dict[str, PeerResult]:
    """Every peer but those in ``skip`` on one seed's votes (``with_lfs``: plus the LFs')."""
    fits = {p: partial(crowdkit, kept, p, seed) for p in PEERS[:4]}
    fits["snorkel"] = partial(snorkel, with_lfs, seed)
    fits["crowdlab"] = partial(crowdlab, kept, pred_probs)
    results = {}
    for name, fit in fits.items():
        if name not in skip:
            print(f"  seed {seed}: {name} ...", file=sys.stderr)
            results[name] = run_peer(fit)
    return results


def _spread(
    n_items: int, index: np.ndarray, probs: np.ndarray, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-item soft and hard labels from those of the items ``index``; the rest get -1."""
    full = np.full((n_items, 2), 0.5)
    full[index] = probs
    hard = np.full(n_items, -1, dtype=np.int64)
    hard[index] = probs.argmax(axis=1) if labels is None else labels
    return full, hard


def crowdkit(votes: VoteMatrix, peer: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One crowd-kit aggregator, default settings, over ``votes``."""
    from crowdkit.aggregation import GLAD, MACE, DawidSkene, MajorityVote, Wawa

    frame = pd.DataFrame({"task": votes.items, "worker": votes.voters, "label": votes.labels})
    if peer == "crowdkit_wawa":
        # Wawa's predict step calls scikit-learn's check_is_fitted, which scikit-learn 1.6+
        # refuses on crowd-kit's estimators; this is that step (a majority vote weighted by
        # the skills Wawa fitted) without the check.
        proba = MajorityVote().fit(frame, skills=Wawa().fit(frame).skills_).probas_
    else:
        models = {
            "crowdkit_ds": DawidSkene,
            "crowdkit_glad": GLAD,
            "crowdkit_mace": lambda: MACE(random_state=seed),
        }
        proba = models[peer]().fit_predict_proba(frame)
    proba = proba.reindex(columns=[0, 1], fill_value=0.0)
    return _spread(votes.n_items, proba.index.to_numpy(np.int64), proba.to_numpy(np.float64))


def _dense_cells_check(n_rows: int, n_cols: int) -> None:
    if n_rows * n_cols > DENSE_CELLS:
        raise MemoryError(
            f"needs a dense {n_rows:,} x {n_cols:,} matrix "
            f"({n_rows * n_cols:,} cells, over the {DENSE_CELLS:,} cap)"
        )


def snorkel(votes: VoteMatrix, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Snorkel's LabelModel over every voter of ``votes`` (crowd and labeling functions)."""
    from snorkel.labeling.model import LabelModel

    voters, column = np.unique(votes.voters, return_inverse=True)
    _dense_cells_check(votes.n_items, len(voters))
    matrix = np.full((votes.n_items, len(voters)), -1, dtype=np.int64)
    matrix[votes.items, column] = votes.labels
    model = LabelModel(cardinality=2, verbose=False, device="cpu")
    model.fit(
        matrix, n_epochs=SNORKEL_EPOCHS, seed=seed, log_freq=SNORKEL_EPOCHS, progress_bar=False
    )
    probs = model.predict_proba(matrix)
    voted = np.flatnonzero(votes.votes_per_item() > 0)
    return _spread(votes.n_items, voted, probs[voted])


@dataclass(frozen=True)
class Features:
    """The dataset's texts featurized once by the default transform, and how long that took."""

    matrix: sparse.csr_matrix
    seconds: float

    @classmethod
    def of(cls, texts: list[str]) -> Features:
        started = time.perf_counter()
        transform = fit_transform(texts, [{} for _ in texts], FeatureConfig())
        batch = transform.apply(texts, [{} for _ in texts])
        matrix = sparse.csr_matrix(
            (batch.values, batch.indices, batch.indptr), shape=(len(texts), batch.dim)
        )
        return cls(matrix, time.perf_counter() - started)


def classifier_probs(features: Features, kept: VoteMatrix, seed: int) -> np.ndarray:
    """Out-of-fold P(class) per item with a kept vote (fit on the kept votes' majority).

    Items with no kept vote get the share of each class among the others' targets.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    majority = aggregate(kept, "majority").labels.astype(np.int64)
    voted = np.flatnonzero(majority >= 0)
    target = majority[voted]
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    model = LogisticRegression(max_iter=1000)
    rows = features.matrix[: kept.n_items][voted]
    out_of_fold = cross_val_predict(model, rows, target, cv=folds, method="predict_proba")
    probs = np.tile(np.bincount(target, minlength=2) / len(target), (kept.n_items, 1))
    probs[voted] = out_of_fold
    return probs


def crowdlab(votes: VoteMatrix, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CROWDLAB's consensus over ``votes``, with the classifier's ``pred_probs``."""
    from cleanlab.multiannotator import get_label_quality_multiannotator

    # Items and annotators with no kept vote are rejected by cleanlab (all-NaN rows/columns).
    items, row = np.unique(votes.items, return_inverse=True)
    voters, column = np.unique(votes.voters, return_inverse=True)
    _dense_cells_check(len(items), len(voters))
    matrix = np.full((len(items), len(voters)), np.nan)
    matrix[row, column] = votes.labels
    found = get_label_quality_multiannotator(
        matrix,
        pred_probs[items],
        return_detailed_quality=False,
        return_annotator_stats=False,
        return_weights=True,
        verbose=False,
    )
    quality = found["label_quality"]
    # CROWDLAB's posterior: the model's probabilities at weight model_weight, plus each
    # annotator's label at its weight, the label's class getting the mean agreement with the
    # consensus on items with several labels and the other class the rest (binary task).
    several = quality["num_annotations"].to_numpy() != 1
    agree = float(np.nanmean(quality["annotator_agreement"].to_numpy()[several]))
    weight = np.asarray(found["annotator_weight"], dtype=np.float64)[column]
    model_weight = float(found["model_weight"])
    post = pred_probs[items] * model_weight
    voted_one = votes.labels.astype(np.int64)
    post[:, 1] += np.bincount(row, weight * np.where(voted_one == 1, agree, 1 - agree), len(items))
    post[:, 0] += np.bincount(row, weight * np.where(voted_one == 0, agree, 1 - agree), len(items))
    post /= (model_weight + np.bincount(row, weight, len(items)))[:, None]
    consensus = quality["consensus_label"].to_numpy(np.int64)
    return _spread(votes.n_items, items, post, consensus)


def with_classifier_voter(
    votes: VoteMatrix, pred_probs: np.ndarray, voted: np.ndarray
) -> VoteMatrix:
    """``votes`` plus one more voter, the classifier, voting its top class on items ``voted``.

    Its voter id is an ordinary (crowd) one: Dawid-Skene learns its confusion from
    the items like any worker's, and as it votes on every item with a crowd vote it
    needs no firing rate.
    """
    return VoteMatrix.from_arrays(
        np.r_[votes.items, voted],
        np.r_[votes.voters, np.full(len(voted), votes.n_voters)],
        np.r_[votes.labels, pred_probs[voted].argmax(axis=1)],
        2,
        item_ids=votes.item_ids,
        voter_ids=(*votes.voter_ids, "model:classifier"),
    )
