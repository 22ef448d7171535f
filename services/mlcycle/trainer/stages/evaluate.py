"""The ``evaluate`` stage: the selected model on dev and test, overall and per slice.

The test split is scored here, once, for the selected model only. Slices come
from the stored comments of the split's rows: their source, a length bucket,
and the metadata fields the job names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlcycle.common.store import Store
from mlcycle.contracts.comments import StoredComment
from mlcycle.contracts.repositories.comments import READ_BATCH, Comments
from mlcycle.evaluation.classification import Evaluation, evaluate
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.fit import FitResult, predict_probabilities
from mlcycle.trainer.stages.context import JobContext
from mlcycle.trainer.thresholds import served_threshold

LENGTH_BUCKETS = ((0, 40, "<40 chars"), (40, 120, "40-119 chars"), (120, 10**9, "120+ chars"))


@dataclass(frozen=True)
class Evaluated:
    """The selected model's evaluations, its test probabilities, and the dev split's comments."""

    dev: Evaluation
    test: Evaluation | None
    test_probabilities: np.ndarray | None
    # Read once: for the slices here and to re-score production on the same items.
    dev_comments: list[StoredComment]


def class_names(n_classes: int) -> list[str]:
    """The classes' names: their indices."""
    return [str(i) for i in range(n_classes)]


def stored_comments(store: Store, split: SplitData) -> list[StoredComment]:
    """The stored comment of every row of ``split``, in row order (an empty one where missing)."""
    ids = [str(i) for i in split.item_ids]
    comments = Comments(store)
    found: dict[str, StoredComment] = {}
    for start in range(0, len(ids), READ_BATCH):
        found.update(comments.get_many(ids[start : start + READ_BATCH]))
    return [found.get(i) or StoredComment(id=i) for i in ids]


def slice_values(comments: Sequence[StoredComment], fields: list[str]) -> dict[str, list[Any]]:
    """Per slice field (source, length, ``metadata.<field>``), one value per row."""
    slices: dict[str, list[Any]] = {"source": [], "length": []}
    for name in fields:
        slices[f"metadata.{name}"] = []
    for comment in comments:
        slices["source"].append(comment.source)
        slices["length"].append(_length_bucket(len(comment.text)))
        for name in fields:
            slices[f"metadata.{name}"].append(comment.metadata.get(name))
    return slices


def evaluate_selected(ctx: JobContext, best: FitResult, data: TrainingData) -> Evaluated:
    """Evaluate the winner on dev (its probabilities from the search) and on test."""
    ctx.recorder.stage("evaluate")
    fields = ctx.config.slice_fields
    names = class_names(data.n_classes)
    dev_comments = stored_comments(ctx.store, data.dev)
    test_comments = stored_comments(ctx.store, data.test)
    # Thresholded figures at the threshold the model is served with.
    threshold = served_threshold(best)
    dev = evaluate(
        best.dev_probabilities,
        data.dev.labels,
        names,
        threshold=threshold,
        slices=slice_values(dev_comments, fields),
    )
    if len(data.test) == 0:
        return Evaluated(dev, None, None, dev_comments)
    if best.predict_texts is not None:  # a model that reads the texts (the encoder)
        test_probabilities = best.predict_texts([c.text for c in test_comments])
    else:
        test_probabilities = predict_probabilities(best.model, data.test)
    test = evaluate(
        test_probabilities,
        data.test.labels,
        names,
        threshold=threshold,
        slices=slice_values(test_comments, fields),
    )
    return Evaluated(dev, test, test_probabilities, dev_comments)


def headline(evaluation: Evaluation) -> dict[str, Any]:
    """The figures a model's lineage keeps of an evaluation (no slices, no confusion)."""
    d = evaluation.to_dict()
    keep = (
        "n",
        "threshold",
        "accuracy",
        "roc_auc",
        "pr_auc",
        "macro_f1",
        "weighted_f1",
        "best_threshold",
        "best_f1",
        "ece",
        "log_loss",
        "recall",
    )
    return {k: d[k] for k in keep if k in d}


def _length_bucket(chars: int) -> str:
    return next(label for low, high, label in LENGTH_BUCKETS if low <= chars < high)
