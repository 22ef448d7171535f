"""How good a classifier is: metrics and per-slice metrics from its class probabilities.

:func:`evaluate` turns the ``(n, K)`` class probabilities of a model on a
split and the true labels into one :class:`Evaluation`: the figures the
trainer selects trials on, blesses models with and stores next to each
exported model (``to_dict`` is JSON-ready). :mod:`mlcycle.evaluation.curves`
gives the points of the ROC, precision-recall and reliability plots.

Conventions, so numbers mean the same everywhere:

* Binary tasks (K = 2) score the positive class 1: AUCs rank by ``p[:, 1]``
  and a row is predicted positive when ``p[:, 1] >= threshold``.
  Multi-class tasks predict the argmax and average AUCs one-vs-rest (macro)
  over the classes present in the labels.
* An AUC is ``None``, not a number, when the labels hold a single class:
  it is undefined there, and a made-up 0.5 or NaN would silently pass a
  blessing threshold or break JSON.
* The calibration error is the top-label ECE of
  :mod:`mlcycle.evaluation.calibration` (equal-width bins, count-weighted), the
  same definition the label diagnostics report, so soft labels and models
  are compared on one scale.
* Class 0 is the negative class ("not toxic"): a slice's ``positive_rate``
  is the share of its rows whose true class is not 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

from mlcycle.common.errors import InvalidInput
from mlcycle.evaluation.calibration import expected_calibration_error

#: The names :meth:`Evaluation.metric` answers, i.e. what a search may select on.
METRICS = ("roc_auc", "pr_auc", "weighted_f1", "macro_f1", "accuracy", "ece", "log_loss")
#: Of :data:`METRICS`, those where smaller is better; every other one is better larger.
LOWER_IS_BETTER = frozenset({"ece", "log_loss"})
#: The slice a row falls in when its slice value is missing.
MISSING_SLICE = "(none)"
#: Slices kept per field: the largest ones, so a report stays readable on high-cardinality fields.
MAX_SLICES_PER_FIELD = 20

# Floating-point slack when checking that rows are probabilities: float32 softmax
# outputs are off by ~1e-7 per entry and their sums by a little more.
_RANGE_TOLERANCE = 1e-6
_SUM_TOLERANCE = 1e-3
_LOG_LOSS_FLOOR = 1e-7


@dataclass(frozen=True)
class Evaluation:
    """The metrics of one model on one split; see the module docstring for the conventions."""

    n: int
    n_classes: int
    class_names: tuple[str, ...]
    # Binary: the threshold on p[:, 1] of every thresholded metric. Multi-class predicts
    # the argmax and records 0.5 (the threshold argmax amounts to when K = 2).
    threshold: float
    accuracy: float
    roc_auc: float | None
    pr_auc: float | None
    macro_f1: float
    weighted_f1: float
    recall: dict[str, float]
    precision: dict[str, float]
    confusion: list[list[int]]  # rows = true class, columns = predicted class
    best_threshold: float | None
    best_f1: float | None
    ece: float
    log_loss: float
    slices: dict[str, dict[str, dict[str, float | int | None]]]

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON types (lists for tuples), e.g. for ``metadata.json``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["class_names"] = list(self.class_names)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evaluation:
        """Inverse of :meth:`to_dict` (e.g. an evaluation read back from a job record)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        values["class_names"] = tuple(values.get("class_names") or ())
        return cls(**values)

    def metric(self, name: str) -> float:
        """The value of metric ``name`` (one of :data:`METRICS`), for selecting and blessing.

        Raises ``ValueError`` for an unknown name and for an AUC that is
        undefined on this split, rather than returning a number a
        comparison would take at face value.
        """
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
        value = getattr(self, name)
        if value is None:
            raise ValueError(
                f"{name} is undefined on this split: its {self.n} label(s) hold a single class"
            )
        return float(value)


def evaluate(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    threshold: float = 0.5,
    slices: Mapping[str, Sequence[Any]] | None = None,
    min_slice_size: int = 20,
    ece_bins: int = 15,
) -> Evaluation:
    """Evaluate ``probabilities`` ``(n, K)`` against ``labels`` ``(n,)`` class indices.

    ``slices`` maps a field (e.g. ``"language"``) to one value per row; each
    distinct value (``str()``-ed; None and NaN become ``"(none)"``) with at
    least ``min_slice_size`` rows gets its own metrics, for the largest
    :data:`MAX_SLICES_PER_FIELD` values of the field. Small slices are
    dropped because their metrics are noise that would only invite
    over-reading. Raises :class:`InvalidInput` on malformed input.
    """
    probs, y = checked_probabilities(probabilities, labels)
    n, k = probs.shape
    names = _class_names(class_names, k)
    if not (isinstance(threshold, int | float | np.floating) and 0.0 <= threshold <= 1.0):
        raise InvalidInput(f"threshold must be a number in [0, 1], not {threshold!r}")
    if ece_bins < 1:
        raise InvalidInput(f"ece_bins must be at least 1, not {ece_bins}")
    if min_slice_size < 1:
        raise InvalidInput(f"min_slice_size must be at least 1, not {min_slice_size}")

    predicted = _predict(probs, threshold)
    everything = list(range(k))
    precision, recall, _, _ = precision_recall_fscore_support(
        y, predicted, labels=everything, zero_division=0.0
    )
    best_threshold, best_f1 = _best_threshold(probs, y) if k == 2 else (None, None)
    true_scores = np.clip(probs[np.arange(n), y], _LOG_LOSS_FLOOR, 1.0)
    return Evaluation(
        n=n,
        n_classes=k,
        class_names=names,
        threshold=float(threshold) if k == 2 else 0.5,
        accuracy=float(accuracy_score(y, predicted)),
        roc_auc=_roc_auc(probs, y),
        pr_auc=_pr_auc(probs, y),
        macro_f1=float(f1_score(y, predicted, average="macro", zero_division=0.0)),
        weighted_f1=float(f1_score(y, predicted, average="weighted", zero_division=0.0)),
        recall={name: float(r) for name, r in zip(names, recall, strict=True)},
        precision={name: float(p) for name, p in zip(names, precision, strict=True)},
        confusion=confusion_matrix(y, predicted, labels=everything).tolist(),
        best_threshold=best_threshold,
        best_f1=best_f1,
        ece=expected_calibration_error(probs, y, ece_bins),
        # sklearn's log_loss no longer takes a clipping floor; the spec'd floor keeps one
        # confidently wrong row from turning the mean into infinity.
        log_loss=float(-np.log(true_scores).mean()),
        slices=_slices(slices or {}, probs, y, predicted, min_slice_size),
    )


# --------------------------------------------------------------------------- validation


def checked_probabilities(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(probs, labels)`` as float64 ``(n, K)`` in [0, 1] and int64 ``(n,)``; else InvalidInput."""
    try:
        probs = np.asarray(probabilities, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"probabilities must be a numeric (n, K) array: {exc}") from exc
    y = np.asarray(labels)
    if probs.ndim != 2:
        raise InvalidInput(f"probabilities must have shape (n, K), not {probs.shape}")
    n, k = probs.shape
    if n == 0:
        raise InvalidInput("nothing to evaluate: probabilities has no rows")
    if k < 2:
        raise InvalidInput(f"probabilities must have at least 2 class columns, not {k}")
    if y.shape != (n,):
        raise InvalidInput(
            f"labels must have shape ({n},) to match probabilities {probs.shape}, not {y.shape}"
        )
    y = _integer_labels(y)
    outside = (y < 0) | (y >= k)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise InvalidInput(
            f"labels must be class indices in [0, {k}); {int(outside.sum())} are not "
            f"(first: {int(y[row])} at row {row})",
            details={"row": row},
        )
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidInput(
            f"probabilities hold NaN or infinite values in {int(bad.sum())} row(s) "
            f"(first at row {row})",
            details={"row": row},
        )
    low, high = float(probs.min()), float(probs.max())
    if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
        raise InvalidInput(
            f"probabilities must lie in [0, 1]; found values from {low:g} to {high:g} "
            "(logits instead of softmax outputs?)"
        )
    sums = probs.sum(axis=1)
    off = np.abs(sums - 1.0)
    if off.max() > _SUM_TOLERANCE:
        row = int(off.argmax())
        raise InvalidInput(
            f"each row of probabilities must sum to 1; row {row} sums to {sums[row]:g}",
            details={"row": row},
        )
    return np.clip(probs, 0.0, 1.0), y


def _integer_labels(y: np.ndarray) -> np.ndarray:
    if y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all():
        return y.astype(np.int64)
    raise InvalidInput(f"labels must be integer class indices, not {y.dtype} values")


def _class_names(class_names: Sequence[str] | None, k: int) -> tuple[str, ...]:
    if class_names is None:
        return tuple(str(i) for i in range(k))
    names = tuple(str(name) for name in class_names)
    if len(names) != k:
        raise InvalidInput(f"{len(names)} class names given for {k} probability columns")
    if len(set(names)) != k:
        raise InvalidInput(f"class names must be distinct, got {list(names)}")
    return names


# --------------------------------------------------------------------------- metrics


def _predict(probs: np.ndarray, threshold: float) -> np.ndarray:
    if probs.shape[1] == 2:
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(axis=1)


def _roc_auc(probs: np.ndarray, y: np.ndarray) -> float | None:
    # Per-class binary AUCs averaged over the classes present: the same number as
    # roc_auc_score(multi_class="ovr", average="macro") when all are present, but it
    # neither fails when one is absent nor re-checks the row sums at 1e-8 tolerance.
    present = np.unique(y)
    if len(present) < 2:
        return None
    if probs.shape[1] == 2:
        return float(roc_auc_score(y == 1, probs[:, 1]))
    return float(np.mean([roc_auc_score(y == c, probs[:, c]) for c in present]))


def _pr_auc(probs: np.ndarray, y: np.ndarray) -> float | None:
    present = np.unique(y)
    if len(present) < 2:
        return None
    if probs.shape[1] == 2:
        return float(average_precision_score(y == 1, probs[:, 1]))
    return float(np.mean([average_precision_score(y == c, probs[:, c]) for c in present]))


def _best_threshold(probs: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    """The threshold on ``p[:, 1]`` (predict positive when ``>=``) with the best positive F1.

    Candidates are the observed scores; among equally good ones the lowest wins,
    which for separable scores is the smallest positive score.
    """
    positive = y == 1
    if not positive.any():
        return None, None
    precision, recall, thresholds = precision_recall_curve(positive, probs[:, 1])
    # The curve's last point (precision 1, recall 0) has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])


def _slices(
    slices: Mapping[str, Sequence[Any]],
    probs: np.ndarray,
    y: np.ndarray,
    predicted: np.ndarray,
    min_size: int,
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    n = len(y)
    for field, raw in slices.items():
        values = list(raw)
        if len(values) != n:
            raise InvalidInput(f"slice field {field!r} has {len(values)} values for {n} rows")
        keys = np.array([_slice_key(v) for v in values], dtype=object)
        sizes = Counter(keys.tolist())
        largest = sorted(sizes.items(), key=lambda item: (-item[1], item[0]))
        field_slices: dict[str, dict[str, float | int | None]] = {}
        for key, size in largest[:MAX_SLICES_PER_FIELD]:
            if size < min_size:
                break
            rows = keys == key
            field_slices[key] = _slice_metrics(probs[rows], y[rows], predicted[rows])
        out[str(field)] = field_slices
    return out


def _slice_key(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_SLICE
    return str(value)


def _slice_metrics(
    probs: np.ndarray, y: np.ndarray, predicted: np.ndarray
) -> dict[str, float | int | None]:
    return {
        "n": len(y),
        "accuracy": float(accuracy_score(y, predicted)),
        "roc_auc": _roc_auc(probs, y),
        "weighted_f1": float(f1_score(y, predicted, average="weighted", zero_division=0.0)),
        "positive_rate": float((y != 0).mean()),
    }
