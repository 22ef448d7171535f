"""The ``behaviour`` stage: the behavioural suite scored with the candidate, and with production.

The candidate is scored in-process: its model and transform, its scores
labelled with the threshold it will serve with, so the rates are the ones a
served model would show. Production's rates come from its ``metadata.json``
when they were measured on the same suite (the suite's content hash); else
production is re-scored with its own SavedModel, transform and threshold; when
neither is possible, the check says why it was skipped and does not gate.
The suite is never trained on: the feature sets leave its cases out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.common.files import confined
from mlcycle.contracts.models import ModelVersion
from mlcycle.evaluation.behaviour import (
    BehaviourSuite,
    SuiteResult,
    held_out_of,
    load_suite,
    rates_of,
    recorded_summary,
    regressions,
    run_suite,
    threshold_scorer,
)
from mlcycle.featurization.held_out import HeldOutTexts
from mlcycle.featurization.transform import Transform
from mlcycle.trainer import export as exporting
from mlcycle.trainer.blessing import BehaviourCheck
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.encoder_export import TokenServingModel, is_token_model
from mlcycle.trainer.fit import FitResult, predict_probabilities
from mlcycle.trainer.stages.context import JobContext
from mlcycle.trainer.stages.evaluate import Evaluated
from mlcycle.trainer.thresholds import served_threshold

Probabilities = Callable[[SplitData], np.ndarray]


def held_out(ctx: JobContext) -> HeldOutTexts:
    """The suite's texts, which the job's feature sets leave out."""
    return held_out_of(ctx.environment.behaviour_suite)


def suite_of(ctx: JobContext) -> BehaviourSuite | None:
    """The configured suite, None without one; a broken suite fails the job, naming the file."""
    path = ctx.environment.behaviour_suite
    return None if path is None else load_suite(path)


def score_candidate(
    ctx: JobContext, best: FitResult, data: TrainingData, evaluated: Evaluated
) -> SuiteResult | None:
    """The suite's pass rates for the winner; None without a suite or for a multi-class task."""
    suite = suite_of(ctx)
    if suite is None or data.n_classes != 2:
        return None
    ctx.recorder.stage("behaviour", detail=f"{len(suite)} cases")
    if best.predict_texts is not None:  # the encoder reads the texts themselves
        return score_texts(suite, best.predict_texts, served_threshold(best))
    transform = ctx.transforms.transform(data.transform)

    def probabilities(split: SplitData) -> np.ndarray:
        return predict_probabilities(best.model, split)

    return score(suite, transform, probabilities, served_threshold(best))


def score(
    suite: BehaviourSuite, transform: Transform, probabilities: Probabilities, threshold: float
) -> SuiteResult:
    """Run ``suite`` through ``transform`` and a model's ``probabilities``, cut at ``threshold``."""

    def scores(texts: Sequence[str]) -> list[float]:
        batch = transform.apply(list(texts), [{} for _ in texts], unknown_fields="ignore")
        split = SplitData.from_batch(batch, np.zeros(len(texts), np.int64))
        return probabilities(split)[:, 1].tolist()

    return run_suite(suite, threshold_scorer(scores, threshold))


def score_texts(
    suite: BehaviourSuite, probabilities: Callable[[list[str]], np.ndarray], threshold: float
) -> SuiteResult:
    """Run ``suite`` through a model that scores texts (the encoder), cut at ``threshold``."""

    def scores(texts: Sequence[str]) -> list[float]:
        return probabilities(list(texts))[:, 1].tolist()

    return run_suite(suite, threshold_scorer(scores, threshold))


def check(
    ctx: JobContext, candidate: SuiteResult | None, production: ModelVersion | None
) -> BehaviourCheck | None:
    """The candidate's rates against production's; None when the suite was not run."""
    if candidate is None:
        return None
    margin = ctx.config.behaviour_margin
    if production is None:
        return BehaviourCheck(margin, candidate.pass_rate, "no production model to compare with")
    rates, pass_rate, how = production_rates(ctx, production, candidate.digest)
    if rates is None:
        return BehaviourCheck(margin, candidate.pass_rate, how)
    lost = tuple(regressions(candidate.rates(), rates, margin))
    return BehaviourCheck(margin, candidate.pass_rate, how, lost, pass_rate)


def production_rates(
    ctx: JobContext, production: ModelVersion, digest: str
) -> tuple[dict[str, float] | None, float | None, str]:
    """Production's per-capability rates and overall rate on the suite of ``digest``, and how
    they were obtained; no rates, with the reason, when they cannot be had."""
    version = f"production v{production.version}"
    try:
        path = confined(ctx.settings.models_dir, production.path or "", what="model")
        metadata = exporting.read_metadata(path)
    except (NotFound, InvalidInput, OSError, ValueError) as exc:
        return None, None, f"comparison with {version} skipped: no metadata.json ({exc})"
    recorded = metadata.get("behaviour")
    summary = recorded_summary(recorded, digest)
    if summary is not None:
        how = f"{version}'s rates recorded in its metadata.json on this suite"
        return rates_of(summary), summary.pass_rate, how
    why = "its metadata.json has rates of another suite" if recorded else "it recorded none"
    suite = suite_of(ctx)
    if suite is None:  # pragma: no cover - the candidate was scored on it a moment ago
        return None, None, f"comparison with {version} skipped: no suite"
    classes = metadata.get("classes") or ["0", "1"]
    if len(classes) != 2:
        return None, None, f"comparison with {version} skipped: it is not a binary model"
    threshold = threshold_of(metadata)
    if is_token_model(metadata):  # an encoder: its own SavedModel and tokenizer
        try:
            tokens_model = TokenServingModel(path)
        except (NotFound, InvalidInput) as exc:
            return None, None, f"comparison with {version} skipped: {why}, and it is gone ({exc})"
        result = score_texts(suite, tokens_model.probabilities, threshold)
        how = f"{version} re-scored with its own model, tokenizer and threshold ({why})"
        return result.rates(), result.pass_rate, how
    try:
        served = exporting.ServingModel(path)
        transform = ctx.transforms.transform(production.transform)
    except (NotFound, InvalidInput) as exc:
        return None, None, f"comparison with {version} skipped: {why}, and it is gone ({exc})"
    threshold = threshold_of(metadata)

    def probabilities(split: SplitData) -> np.ndarray:
        return served.probabilities(*split.flat_rows(np.arange(len(split))).padded())

    result = score(suite, transform, probabilities, threshold)
    how = f"{version} re-scored with its own model, transform and threshold ({why})"
    return result.rates(), result.pass_rate, how


def threshold_of(metadata: Mapping[str, Any]) -> float:
    """The threshold a version serves with, from its ``metadata.json`` (a number or a section
    with a ``value``); 0.5 when it names none."""
    threshold = metadata.get("threshold")
    if isinstance(threshold, dict):
        threshold = threshold.get("value")
    return float(threshold) if isinstance(threshold, int | float) else 0.5
