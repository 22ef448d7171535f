"""The searched network's linear companion: a logistic regression on the same features, blended.

A network over bags of n-grams and an L2-regularized logistic regression over
the very same columns learn much the same thing but make different mistakes,
so averaging their logits ranks items better than either alone, a common
recipe of toxic-comment classifiers. On Davidson's
tweets (``benchmarks/quality.py``) the blend is what lifts the selected model
past TF-IDF + logistic regression on test, where the network alone is level
with it.

After the search, the trainer fits scikit-learn's ``LogisticRegression`` on
the winner's train split with the job's soft labels (a row counts once for
every class it has probability for, weighted by that probability, times its
class weight), picks C on dev by the job's metric, then picks the weight
``w`` of ``logits = w * network(x) + (1 - w) * linear(x)`` on dev as well.
The blend is kept only when it beats the network alone on dev, and the
network always keeps at least a quarter of the say: the job trains a neural
network, the linear part corrects it. The fitted coefficients become a frozen
layer of the exported model, so serving sees one model with one signature.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from mlcycle.contracts.training import BlendSummary
from mlcycle.evaluation.classification import evaluate
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.fit import FitResult, example_weights, predict_probabilities
from mlcycle.trainer.models import BlendedModel

log = logging.getLogger(__name__)

# Inverse L2 strengths tried on dev; on Davidson's features dev peaks at 4.
C_GRID = (1.0, 4.0, 16.0)
# The network's share of the blended logits; 1.0 is the network alone.
NETWORK_WEIGHTS = (1.0, 0.75, 0.5, 0.25)
MAX_ITER = 1000


@dataclass(frozen=True)
class LinearFit:
    """A fitted logistic regression as logits over the input: ``x @ kernel + bias``."""

    kernel: np.ndarray  # float32 (dim, n_classes)
    bias: np.ndarray  # float32 (n_classes,)
    c: float
    dev_probabilities: np.ndarray
    dev_metric: float
    dev_by_c: dict[float, float]


def weighted_rows(
    split: SplitData,
    n_classes: int,
    *,
    soft_labels: bool,
    class_weight: str,
    source_weights: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, class, sample weight) triples that make a hard-label fit learn ``split``'s targets.

    With soft labels a row appears once per class it has probability for; the
    cross-entropy of those weighted copies is the soft-label cross-entropy.
    Rows whose soft label is one-hot (most of them) appear once. Each row
    weighs what it weighs for the network (class times source weight); rows
    that weigh 0 do not appear.
    """
    per_row = example_weights(split, n_classes, class_weight, source_weights).astype(np.float64)
    if not soft_labels:
        rows = np.flatnonzero(per_row > 0)
        return rows, split.labels[rows], per_row[rows]
    rows, classes = np.nonzero((split.probabilities > 0) & (per_row > 0)[:, None])
    weights = split.probabilities[rows, classes].astype(np.float64) * per_row[rows]
    return rows, classes, weights


def fit_linear(
    data: TrainingData,
    *,
    metric: str,
    soft_labels: bool = True,
    class_weight: str = "balanced",
    grid: tuple[float, ...] = C_GRID,
    source_weights: Mapping[str, float] | None = None,
) -> LinearFit | None:
    """Logistic regression on ``data.train``, C chosen on dev; None when a class has no rows.

    Every class must appear among the training targets for the coefficients to
    map onto the network's class columns.
    """
    rows, classes, weights = weighted_rows(
        data.train,
        data.n_classes,
        soft_labels=soft_labels,
        class_weight=class_weight,
        source_weights=source_weights,
    )
    if len(np.unique(classes)) < data.n_classes:
        return None
    x_train, x_dev = data.train.csr()[rows], data.dev.csr()
    fitted: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray, float]] = {}
    for c in grid:
        model = LogisticRegression(C=c, max_iter=MAX_ITER)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x_train, classes, sample_weight=weights)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            log.warning("logistic regression (C=%g) did not converge in %d steps", c, MAX_ITER)
        kernel, bias = _as_logits(model, data.n_classes)
        probs = softmax(np.asarray(x_dev @ kernel + bias), axis=1)
        fitted[c] = (kernel, bias, probs, evaluate(probs, data.dev.labels).metric(metric))
    best_c = max(grid, key=lambda c: (fitted[c][3], -c))  # ties: the stronger penalty
    kernel, bias, probs, value = fitted[best_c]
    return LinearFit(
        kernel=kernel,
        bias=bias,
        c=best_c,
        dev_probabilities=probs.astype(np.float32),
        dev_metric=value,
        dev_by_c={c: fitted[c][3] for c in grid},
    )


def _as_logits(model: LogisticRegression, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's coefficients as one logit column per class (binary: a zero column for class 0)."""
    coef = np.asarray(model.coef_, np.float32)
    intercept = np.asarray(model.intercept_, np.float32)
    if n_classes == 2:
        kernel = np.zeros((coef.shape[1], 2), np.float32)
        kernel[:, 1] = coef[0]
        return kernel, np.array([0.0, intercept[0]], np.float32)
    return np.ascontiguousarray(coef.T), intercept


def linear_part_probabilities(model: BlendedModel, split: SplitData) -> np.ndarray:
    """What the linear part of ``model`` alone answers for ``split`` (for comparisons)."""
    kernel, bias = model.linear.embeddings.numpy(), model.linear.bias.numpy()
    return softmax(np.asarray(split.csr() @ kernel + bias), axis=1).astype(np.float32)


def blend_probabilities(network: np.ndarray, linear: np.ndarray, weight: float) -> np.ndarray:
    """softmax(w * network logits + (1 - w) * linear logits), from the two probability tables.

    Log-probabilities are logits up to a per-row constant, which softmax ignores.
    """
    logs = weight * np.log(np.clip(network, 1e-12, 1.0))
    logs += (1.0 - weight) * np.log(np.clip(linear, 1e-12, 1.0))
    return softmax(logs, axis=1).astype(np.float32)


def blend_with_linear(
    best: FitResult,
    data: TrainingData,
    *,
    metric: str,
    soft_labels: bool = True,
    class_weight: str = "balanced",
    source_weights: Mapping[str, float] | None = None,
) -> FitResult:
    """``best`` blended with its linear companion when that is better on dev, else ``best``.

    The result's ``blend`` says what was tried and chosen either way.
    """
    started = time.monotonic()
    linear = fit_linear(
        data,
        metric=metric,
        soft_labels=soft_labels,
        class_weight=class_weight,
        source_weights=source_weights,
    )
    if linear is None:
        reason = "a class has no training rows"
        return dataclasses.replace(best, blend={"used": False, "reason": reason})
    scored = {
        w: evaluate(
            blend_probabilities(best.dev_probabilities, linear.dev_probabilities, w),
            data.dev.labels,
        ).metric(metric)
        for w in NETWORK_WEIGHTS
    }
    weight = max(NETWORK_WEIGHTS, key=lambda w: (scored[w], w))  # ties: more network
    info: BlendSummary = {
        "used": weight < 1.0 and scored[weight] > best.dev_metric,
        "network_weight": weight,
        "linear_c": linear.c,
        "metric": metric,
        "dev": {"network": best.dev_metric, "linear": linear.dev_metric, "blend": scored[weight]},
        "dev_by_weight": {str(w): v for w, v in scored.items()},
        "dev_linear_by_c": {str(c): v for c, v in linear.dev_by_c.items()},
        "seconds": round(time.monotonic() - started, 2),
    }
    if not info["used"]:
        info["reason"] = "the blend does not beat the network alone on dev"
        return dataclasses.replace(best, blend=info)
    model = BlendedModel(best.model, linear.kernel, linear.bias, weight)
    # The exported model's own answers, which infra-validation compares the server's with.
    probabilities = predict_probabilities(model, data.dev)
    return dataclasses.replace(
        best,
        model=model,
        dev_probabilities=probabilities,
        dev_metric=evaluate(probabilities, data.dev.labels).metric(metric),
        blend=info,
    )


def describe_blend(blend: BlendSummary) -> str:
    """One line for reports and tables: what was blended, and the dev figures behind it."""
    if "dev" not in blend:
        return f"not tried: {blend.get('reason')}"
    dev = blend["dev"]
    figures = (
        f"dev {blend['metric']}: network {dev['network']:.4f}, logistic regression "
        f"(C={blend['linear_c']:g}) {dev['linear']:.4f}"
    )
    if not blend["used"]:
        return f"network alone ({blend.get('reason')}); {figures}"
    weight = blend["network_weight"]
    parts = f"network × {weight:g} + logistic regression × {1 - weight:g}"
    return f"{parts}; {figures}, blend {dev['blend']:.4f}"
