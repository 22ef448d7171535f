"""The served threshold, chosen for the traffic the model will see, not for its training data.

A threshold tuned for best F1 on dev inherits dev's class prior: on a corpus
sampled to be rich in abuse it flags most of a real, mostly benign, comment
stream. Instead, for a binary task:

1. the selected model's dev scores are calibrated by Platt scaling (fitted on
   dev, never on test), so that they are probabilities under dev's class prior;
2. they are moved to the job's deployment prior (``threshold_policy.positive_rate``)
   by the Saerens-Latinne-Decaestecker adjustment, a constant added to the logit;
3. both maps are one affine map of the model's logit, baked into the exported
   model (:class:`~mlcycle.trainer.models.PriorCorrected`), so the served
   ``score`` is the probability of the positive class under the deployment prior;
4. the threshold is the Bayes decision for the job's cost ratio on that
   probability, ``c / (1 + c)``: 0.5 when both errors cost the same.

What the threshold implies at the deployment prior (precision, recall, the
share of traffic flagged) comes from dev's rates within each class, which a
change of prior leaves alone. Test is scored once afterwards for the report
and the lineage, and chooses nothing.

Another model family's exporter reuses the pieces: :func:`fit_correction` on
its dev scores, :func:`~mlcycle.trainer.models.correct_binary_logits` on its
logits before the softmax, :meth:`Correction.summary` for the lineage.

Multi-class tasks keep their model as it is: their label is the most probable
class, and one positive rate does not say how the other classes' priors move.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.thresholds import ImpliedFigures, ThresholdPolicy, ThresholdSummary
from mlcycle.evaluation.calibration import Platt, fit_platt
from mlcycle.evaluation.classification import evaluate
from mlcycle.evaluation.priors import (
    bayes_threshold,
    class_rates,
    implied_precision_recall,
    logit,
    precision_lower_bound,
    prior_shift,
)
from mlcycle.trainer.data import TrainingData
from mlcycle.trainer.fit import FitResult, predict_probabilities
from mlcycle.trainer.models import PriorCorrected

RULE = "bayes"
FALLBACK_RULE = "dev best F1"


@dataclass(frozen=True)
class Correction:
    """The affine map of a binary model's logit that calibrates it and moves it to the traffic.

    Served score ``= sigmoid(scale * logit(model's own probability) + shift)``;
    apply it to any model's logits with
    :func:`~mlcycle.trainer.models.correct_binary_logits` (or wrap a model in
    :class:`~mlcycle.trainer.models.PriorCorrected`), then describe the outcome
    with :meth:`summary`.
    """

    scale: float
    shift: float
    threshold: float
    deployment_prior: float
    dev_prior: float
    platt: Platt
    policy: ThresholdPolicy

    def summary(
        self,
        corrected_dev: np.ndarray,
        raw_dev: np.ndarray,
        dev_labels: np.ndarray,
        *,
        train_prior: float | None = None,
    ) -> ThresholdSummary:
        """What ``metadata.json`` and the report say: which threshold, why, what it implies.

        ``corrected_dev`` are the corrected model's own dev scores (positive class),
        ``raw_dev`` the uncorrected ones the correction was fitted on.
        """
        policy, target = self.policy, self.deployment_prior
        return {
            "applied": True,
            "rule": RULE,
            "threshold": self.threshold,
            "reason": (
                f"calibrated probability of the positive class under a deployment prior of "
                f"{target:.4g} >= c / (1 + c) for a false-positive : false-negative cost ratio "
                f"c = {policy.cost_ratio:g}"
            ),
            "policy": policy.model_dump(),
            "deployment_prior": target,
            "deployment_prior_source": "policy" if policy.positive_rate is not None else "dev",
            "dev_prior": self.dev_prior,
            "train_prior": train_prior,
            "calibration": {**self.platt.as_dict(), "fitted_on": "dev"},
            # served score = sigmoid(scale * logit(model's own probability) + shift)
            "logit_map": {"scale": self.scale, "shift": self.shift},
            # The prior the served scores are probabilities under: the inference service's EM
            # starts from it to estimate the live positive rate.
            "score_prior": target,
            "implied": {"dev": implied_at(corrected_dev, dev_labels, self.threshold, target)},
            "instead": _training_prior_rule(raw_dev, dev_labels, target),
        }


def fit_correction(
    raw_dev: np.ndarray, dev_labels: np.ndarray, policy: ThresholdPolicy
) -> Correction:
    """Platt scaling on dev's positive-class scores ``raw_dev``, then dev's prior moved to the
    policy's; InvalidInput saying why when the scores cannot be corrected."""
    raw = np.asarray(raw_dev, np.float64)
    try:
        platt = fit_platt(np.asarray(logit(raw)), dev_labels)
    except InvalidInput as exc:
        raise InvalidInput(f"cannot calibrate on dev: {exc.message}") from None
    if platt.scale <= 0:
        raise InvalidInput("dev scores rank the classes backwards (Platt slope <= 0)")
    dev_prior = float((np.asarray(dev_labels) == 1).mean())
    target = policy.positive_rate if policy.positive_rate is not None else dev_prior
    return Correction(
        scale=platt.scale,
        shift=platt.shift + prior_shift(dev_prior, target),
        threshold=bayes_threshold(policy.cost_ratio),
        deployment_prior=target,
        dev_prior=dev_prior,
        platt=platt,
        policy=policy,
    )


def choose_threshold(best: FitResult, data: TrainingData, policy: ThresholdPolicy) -> FitResult:
    """``best`` with its scores corrected for the policy's traffic, and the threshold chosen.

    The result's ``threshold`` says what was decided and why either way. A
    binary model whose dev split lacks a class, or whose calibration slope is
    not positive, keeps its scores and the dev best-F1 threshold, saying why.
    """
    if data.n_classes != 2:
        summary: ThresholdSummary = {
            "applied": False,
            "reason": f"{data.n_classes} classes: the label is the most probable class",
            "threshold": None,
        }
        return dataclasses.replace(best, threshold=summary)
    labels = data.dev.labels
    raw = best.dev_probabilities[:, 1].astype(np.float64)
    try:
        correction = fit_correction(raw, labels, policy)
    except InvalidInput as exc:
        return _fallback(best, labels, exc.message)
    model = PriorCorrected(best.model, correction.scale, correction.shift)
    # The exported model's own answers: infra-validation compares the server's with these.
    probabilities = predict_probabilities(model, data.dev)
    train_prior = float((data.train.labels == 1).mean()) if len(data.train) else None
    summary = correction.summary(probabilities[:, 1], raw, labels, train_prior=train_prior)
    return dataclasses.replace(
        best, model=model, dev_probabilities=probabilities, threshold=summary
    )


def implied_at(
    scores: np.ndarray, labels: np.ndarray, threshold: float, prior: float
) -> ImpliedFigures:
    """Precision, recall and flagged share at ``prior`` of ``scores >= threshold``, from the
    rates within each class of ``labels``; with the rates and class counts behind them."""
    rates = class_rates(scores, labels, threshold)
    return {
        **implied_precision_recall(rates, prior),
        "precision_low": precision_lower_bound(rates, prior),
        "tpr": rates.tpr,
        "fpr": rates.fpr,
        "positives": rates.positives,
        "negatives": rates.negatives,
    }


def with_test(
    summary: ThresholdSummary, probabilities: np.ndarray, labels: np.ndarray
) -> ThresholdSummary:
    """``summary`` plus what its threshold implies on test (scored once, for the record)."""
    if not summary.get("applied") or len(labels) == 0:
        return summary
    try:
        test = implied_at(
            probabilities[:, 1], labels, summary["threshold"], summary["deployment_prior"]
        )
    except InvalidInput:  # a test split without one of the classes
        return summary
    return {**summary, "implied": {**summary["implied"], "test": test}}


def served_threshold(best: FitResult) -> float:
    """The threshold the exported model is served with (0.5 when none was chosen)."""
    chosen = (best.threshold or {}).get("threshold")
    return 0.5 if chosen is None else float(chosen)


def describe(summary: ThresholdSummary) -> str:
    """One line for reports: the threshold, the rule and what it implies at the stated prior."""
    if not summary.get("applied"):
        threshold = summary.get("threshold")
        where = f"{threshold:.4f}" if threshold is not None else "none"
        return f"{where} ({summary.get('reason')})"
    dev = summary["implied"]["dev"]
    precision, low = dev["precision"], dev.get("precision_low")
    shown = "n/a" if precision is None else f"{precision:.3f}"
    if low is not None:
        shown += f" (95% lower bound {low:.3f})"
    calibration = summary["calibration"]
    return (
        f"{summary['threshold']:.4f} on the corrected probability; {summary['reason']}; "
        f"Platt scaling on dev (scale {calibration['scale']:.4g}, shift "
        f"{calibration['shift']:.4g}), prior moved from dev's {summary['dev_prior']:.4g}; "
        f"at that prior dev implies precision {shown}, recall {dev['recall']:.3f}, "
        f"{dev['flagged_rate']:.1%} of traffic flagged"
    )


def _training_prior_rule(
    raw: np.ndarray, labels: np.ndarray, prior: float
) -> ImpliedFigures | None:
    """What the old rule (dev's best-F1 threshold on uncorrected scores) implies at ``prior``."""
    two_columns = np.stack([1.0 - raw, raw], axis=1)
    best_f1 = evaluate(two_columns, labels).best_threshold
    if best_f1 is None:
        return None
    return {"rule": FALLBACK_RULE, "threshold": best_f1, **implied_at(raw, labels, best_f1, prior)}


def _fallback(best: FitResult, labels: np.ndarray, reason: str) -> FitResult:
    """Keep the model's own scores and serve dev's best-F1 threshold (or 0.5), saying why."""
    best_f1 = None
    if len(np.unique(labels)) == 2:
        best_f1 = evaluate(best.dev_probabilities, labels).best_threshold
    summary: ThresholdSummary = {
        "applied": False,
        "rule": FALLBACK_RULE,
        "reason": reason,
        "threshold": best_f1 if best_f1 is not None else 0.5,
    }
    return dataclasses.replace(best, threshold=summary)
