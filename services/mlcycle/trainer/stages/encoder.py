"""The encoder variant inside a job: train it, weigh it against the search, export and judge it.

The encoder reads texts, not feature rows: the job's feature set still gives
the splits (item ids, labels, soft labels), and the texts are read from the
store by item id, as the evaluate stage reads them for slices. Its training
cost and its exported model's single-comment latency are measured here and
kept in the job's result and report.

- ``preset: encoder`` trains it alone (no search);
- ``consider_encoder`` trains it after the search and picks it only when it
  beats the searched model on dev *and* its predict p50 is within
  ``latency_budget_ms``.

Export and judging reuse the sparse models' stages: the same version claim,
lineage, infra-validation in a fresh model server, comparison with
production and registration; only the signature's inputs differ.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from mlcycle.common.errors import InvalidInput
from mlcycle.contracts.encoder import EncoderSummary
from mlcycle.contracts.thresholds import ThresholdSummary
from mlcycle.evaluation.behaviour import SuiteResult
from mlcycle.evaluation.classification import evaluate
from mlcycle.featurization.minilm import TOKENIZER, extract_minilm
from mlcycle.featurization.tokens import TokenEncoder
from mlcycle.trainer import encoder as enc
from mlcycle.trainer import encoder_fit as fitting
from mlcycle.trainer import export as exporting
from mlcycle.trainer.blessing import BlessingDecision, InfraCheck
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.encoder_export import (
    SIGNATURE_DOC,
    LogitMap,
    TokenServingModel,
    export_encoder_saved_model,
    input_metadata,
    mapped_probabilities,
    write_token_warmup_requests,
)
from mlcycle.trainer.fit import FitResult, example_weights
from mlcycle.trainer.infra_validation import infra_validate_inputs
from mlcycle.trainer.search import SearchOutcome
from mlcycle.trainer.stages.bless import verdict
from mlcycle.trainer.stages.context import JobContext
from mlcycle.trainer.stages.evaluate import Evaluated, stored_comments
from mlcycle.trainer.stages.export import INFRA_SAMPLE_ROWS, Candidate, claim_staging, lineage
from mlcycle.trainer.stages.profile import write_reference_profile
from mlcycle.trainer.thresholds import FALLBACK_RULE, fit_correction

log = logging.getLogger(__name__)

PRETRAINED_DIR = "pretrained"
# Dev comments timed one at a time for the latency figure (each scored 3 times).
LATENCY_TEXTS = 20


@dataclasses.dataclass(frozen=True)
class EncoderRun:
    """A trained encoder variant, the tokenizer it reads, and its cost."""

    result: FitResult
    tokens: TokenEncoder
    summary: EncoderSummary
    # A calibration and prior correction of the binary logit, baked into the export.
    logit_map: LogitMap | None = None

    def with_logit_map(self, logit_map: LogitMap) -> EncoderRun:
        """This run with ``logit_map`` applied: in its export, its dev probabilities (which
        infra-validation expects the server to answer) and its scoring of texts."""
        result, raw = self.result, self.result.predict_texts
        mapped = dataclasses.replace(
            result,
            dev_probabilities=mapped_probabilities(result.dev_probabilities, logit_map),
            predict_texts=None
            if raw is None
            else (lambda texts: mapped_probabilities(raw(texts), logit_map)),
        )
        return dataclasses.replace(self, result=mapped, logit_map=logit_map)


def split_texts(ctx: JobContext, split: SplitData) -> list[str]:
    """The text of every row of ``split``, in row order, read from the store."""
    return [comment.text for comment in stored_comments(ctx.store, split)]


def train_encoder(ctx: JobContext, data: TrainingData) -> EncoderRun:
    """Encode the job's train and dev texts with the frozen MiniLM and train its head."""
    config, options = ctx.config, ctx.config.encoder
    ctx.recorder.stage("encoder", detail="reading the texts and the verified MiniLM")
    folder = extract_minilm(ctx.environment.artifacts_dir / PRETRAINED_DIR)
    tokens = TokenEncoder(folder / TOKENIZER, options.max_length)
    backbone = enc.load_backbone(folder)
    job = fitting.EncoderTraining(
        train=(split_texts(ctx, data.train), data.train.labels, data.train.probabilities),
        dev=(split_texts(ctx, data.dev), data.dev.labels, data.dev.probabilities),
        n_classes=data.n_classes,
        metric=ctx.metric,
        soft_labels=config.soft_labels,
        class_weight=config.class_weight,
        patience=config.patience,
        seed=config.seed,
        train_weights=example_weights(
            data.train, data.n_classes, config.class_weight, config.source_weights
        ),
    )
    ctx.recorder.stage("encoder", detail=f"encoding {len(data.train) + len(data.dev)} texts")
    deadline = time.monotonic() + max(0.0, config.time_budget_s - ctx.job.spent_s)
    result, summary = fitting.fit_encoder(backbone, tokens, job, options, deadline=deadline)
    model = result.model
    result.predict_texts = lambda texts: enc.predict_texts(model, tokens, texts)
    summary["dev_metric"] = result.dev_metric
    log.info(
        "encoder: %.1f s of training per 10k comments (%d texts: encoding %.1f s, head %.1f s, "
        "fine-tuning %.1f s)",
        summary["train_s_per_10k"],
        summary["train_texts"],
        summary["encode_train_s"],
        summary["head_s"],
        summary["fine_tune_s"],
    )
    return EncoderRun(result, tokens, summary)


def measure_latency(run: EncoderRun, texts: list[str], workdir: Path) -> float:
    """The exported model's single-comment predict p50 (ms), exported to ``workdir`` and loaded."""
    shutil.rmtree(workdir, ignore_errors=True)
    export_encoder_saved_model(run.result.model, workdir, run.tokens.path, run.logit_map)
    exporting.write_metadata(workdir, {"input": input_metadata(workdir, run.tokens.max_length)})
    try:
        return TokenServingModel(workdir).single_predict_ms(texts[:LATENCY_TEXTS] or [""])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def encoder_only(ctx: JobContext, data: TrainingData) -> tuple[SearchOutcome, EncoderRun]:
    """``preset: encoder``: the encoder as the job's one and only candidate."""
    started = time.monotonic()
    run = train_encoder(ctx, data)
    run.summary["chosen"] = True
    run.summary["reason"] = "preset encoder"
    outcome = SearchOutcome(
        best=run.result, best_trial=0, trials=[], seconds=time.monotonic() - started
    )
    return outcome, run


def consider_encoder(
    ctx: JobContext, outcome: SearchOutcome, data: TrainingData
) -> tuple[SearchOutcome, EncoderRun]:
    """The searched winner, or the encoder when it wins on dev within the latency budget."""
    run = train_encoder(ctx, data)
    ctx.recorder.stage("encoder", detail="measuring the exported encoder's predict latency")
    workdir = ctx.environment.artifacts_dir / "trainer" / ctx.job.id / "encoder-latency"
    latency = measure_latency(run, split_texts(ctx, data.dev)[:LATENCY_TEXTS], workdir)
    budget = ctx.config.latency_budget_ms
    run.summary["predict_p50_ms"] = round(latency, 3)
    run.summary["latency_budget_ms"] = budget
    searched, mine = outcome.best.dev_metric, run.result.dev_metric
    chosen, reason = encoder_verdict(ctx.metric, searched, mine, latency, budget)
    run.summary["chosen"], run.summary["reason"] = chosen, reason
    log.info("encoder %s: %s", "picked" if chosen else "not picked", reason)
    return (dataclasses.replace(outcome, best=run.result) if chosen else outcome), run


def encoder_verdict(
    metric: str, searched: float, mine: float, latency_ms: float, budget_ms: float
) -> tuple[bool, str]:
    """Whether the encoder replaces the searched model, and why: it must win on dev *and*
    answer a single comment within the budget."""
    if mine <= searched:
        return False, f"dev {metric} {mine:.4f} does not beat {searched:.4f}"
    if latency_ms > budget_ms:
        return False, (
            f"dev {metric} {mine:.4f} beats {searched:.4f}, but its predict p50 "
            f"{latency_ms:.1f} ms exceeds the {budget_ms:g} ms budget"
        )
    return True, (
        f"dev {metric} {mine:.4f} beats {searched:.4f} and its predict p50 "
        f"{latency_ms:.1f} ms is within the {budget_ms:g} ms budget"
    )


def export_encoder_candidate(
    ctx: JobContext,
    run: EncoderRun,
    data: TrainingData,
    evaluated: Evaluated,
    behaviour: SuiteResult | None = None,
) -> Candidate:
    """Stage the encoder's SavedModel with its tokenizer, token warm-ups and ``metadata.json``."""
    name, version, staging = claim_staging(ctx)
    export_encoder_saved_model(run.result.model, staging, run.tokens.path, run.logit_map)
    texts = [c.text for c in evaluated.dev_comments[:INFRA_SAMPLE_ROWS]]
    write_token_warmup_requests(staging, name, run.tokens.encode(texts))
    # The input block first: it is what TokenServingModel reads to load the staged version.
    exporting.write_metadata(staging, {"input": input_metadata(staging, run.tokens.max_length)})
    if "predict_p50_ms" not in run.summary:  # preset encoder: time the staged export itself
        served = TokenServingModel(staging)
        run.summary["predict_p50_ms"] = round(served.single_predict_ms(texts or [""]), 3)
        run.summary["latency_budget_ms"] = ctx.config.latency_budget_ms
    metadata = {
        **lineage(ctx, version, run.result, data, evaluated),
        "feature_variant": None,
        "input_dim": None,
        "input": input_metadata(staging, run.tokens.max_length),
        "signature": SIGNATURE_DOC,
        "encoder": dict(run.summary),
        # The encoder reads texts through its own tokenizer: no transform's words or fields.
        "profile": write_reference_profile(
            staging, name, version, run.result, data, evaluated, transform=None
        ),
    }
    if behaviour is not None:
        metadata["behaviour"] = behaviour.summary().model_dump()
    exporting.write_metadata(staging, metadata)
    return Candidate(name, version, staging, metadata)


def judge_encoder(
    ctx: JobContext,
    candidate: Candidate,
    run: EncoderRun,
    data: TrainingData,
    evaluated: Evaluated,
    behaviour: SuiteResult | None = None,
) -> BlessingDecision:
    """Infra-validate the export with token inputs, then compare it with production on dev."""
    ctx.recorder.stage("bless")
    rows = np.arange(min(INFRA_SAMPLE_ROWS, len(data.dev)))
    texts = [evaluated.dev_comments[i].text for i in rows]
    passed, message = infra_validate_inputs(
        candidate.staging,
        candidate.name,
        candidate.version,
        run.tokens.encode(texts).inputs(),
        run.result.dev_probabilities[rows],
        ctx.settings.infra_validation_timeout_s,
    )
    return verdict(ctx, candidate, InfraCheck(passed, message), data, evaluated, behaviour)


def encoder_threshold(ctx: JobContext, run: EncoderRun, data: TrainingData) -> EncoderRun:
    """The threshold stage for the encoder: its dev scores calibrated and moved to the
    traffic's prior (:mod:`mlcycle.trainer.thresholds`), the map baked into its export."""
    ctx.recorder.stage("threshold")
    result, labels = run.result, data.dev.labels
    if data.n_classes != 2:
        summary: ThresholdSummary = {
            "applied": False,
            "reason": f"{data.n_classes} classes: the label is the most probable class",
            "threshold": None,
        }
        return dataclasses.replace(run, result=dataclasses.replace(result, threshold=summary))
    raw = result.dev_probabilities[:, 1].astype(np.float64)
    try:
        correction = fit_correction(raw, labels, ctx.config.threshold_policy)
    except InvalidInput as exc:  # keep its own scores and dev's best-F1 threshold, saying why
        best_f1 = None
        if len(np.unique(labels)) == 2:
            best_f1 = evaluate(result.dev_probabilities, labels).best_threshold
        summary = {
            "applied": False,
            "rule": FALLBACK_RULE,
            "reason": exc.message,
            "threshold": best_f1 if best_f1 is not None else 0.5,
        }
        return dataclasses.replace(run, result=dataclasses.replace(result, threshold=summary))
    mapped = run.with_logit_map((correction.scale, correction.shift))
    train_prior = float((data.train.labels == 1).mean()) if len(data.train) else None
    summary = correction.summary(
        mapped.result.dev_probabilities[:, 1], raw, labels, train_prior=train_prior
    )
    return dataclasses.replace(mapped, result=dataclasses.replace(mapped.result, threshold=summary))
