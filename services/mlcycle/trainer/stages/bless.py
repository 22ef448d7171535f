"""The ``bless`` stage: judge the staged candidate, then serve it or keep it aside, and register it.

The candidate is served by a fresh model server and must answer like training
did (infra-validation); then its dev metric is compared with production's on
the same dev items, production re-scored with its own transform, and its
behavioural pass rates with production's (:mod:`.behaviour`);
:mod:`mlcycle.trainer.blessing` decides. A blessed version's folder is
renamed into place, so a model server sees the whole version or none; an
unblessed one stays in its staging folder, registered with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.common.files import confined
from mlcycle.contracts.comments import StoredComment
from mlcycle.contracts.models import ModelVersion
from mlcycle.contracts.monitoring import ProfileReference
from mlcycle.contracts.training import ModelSummary
from mlcycle.evaluation.behaviour import SuiteResult
from mlcycle.evaluation.classification import evaluate
from mlcycle.trainer import export as exporting
from mlcycle.trainer.blessing import (
    BlessingDecision,
    InfraCheck,
    ProductionScore,
    decide,
    recorded_metric,
)
from mlcycle.trainer.data import SplitData, TrainingData
from mlcycle.trainer.encoder_export import TokenServingModel, is_token_model
from mlcycle.trainer.fit import FitResult
from mlcycle.trainer.infra_validation import infra_validate
from mlcycle.trainer.stages import behaviour as behaviour_stage
from mlcycle.trainer.stages.context import JobContext
from mlcycle.trainer.stages.evaluate import Evaluated
from mlcycle.trainer.stages.export import Candidate, dev_sample, model_summary

RESCORE_BATCH_ROWS = 512


def judge(
    ctx: JobContext,
    candidate: Candidate,
    best: FitResult,
    data: TrainingData,
    evaluated: Evaluated,
    behaviour: SuiteResult | None = None,
) -> BlessingDecision:
    """Infra-validate the export, then compare it with production on this dev split and on
    the behavioural suite (``behaviour``: the candidate's pass rates)."""
    ctx.recorder.stage("bless")
    rows, indices, values = dev_sample(data)
    passed, message = infra_validate(
        candidate.staging,
        candidate.name,
        candidate.version,
        indices,
        values,
        best.dev_probabilities[rows],
        ctx.settings.infra_validation_timeout_s,
    )
    return verdict(ctx, candidate, InfraCheck(passed, message), data, evaluated, behaviour)


def verdict(
    ctx: JobContext,
    candidate: Candidate,
    infra: InfraCheck,
    data: TrainingData,
    evaluated: Evaluated,
    behaviour: SuiteResult | None,
) -> BlessingDecision:
    """The blessing of an infra-checked candidate, whatever its kind: against production's
    dev metric and behavioural rates, once the export passed its infra-validation."""
    value = evaluated.dev.metric(ctx.metric)
    production = None
    behaviour_check = None
    if infra.passed:
        serving = ctx.registry.production(candidate.name)
        if serving is not None:
            production = production_score(ctx, serving, data, evaluated.dev_comments)
        behaviour_check = behaviour_stage.check(ctx, behaviour, serving)
    margin = ctx.config.bless_margin
    if margin is None:
        margin = ctx.settings.bless_margin
    return decide(ctx.metric, value, margin, infra, production, behaviour_check)


def production_score(
    ctx: JobContext,
    production: ModelVersion,
    data: TrainingData,
    dev_comments: Sequence[StoredComment],
) -> ProductionScore:
    """Production's metric on the candidate's dev items, with production's own transform.

    Falls back to the metric production recorded on its own dev split when
    its SavedModel or transform is no longer available.
    """
    metric = ctx.metric
    texts = [c.text for c in dev_comments]
    try:
        path = confined(ctx.settings.models_dir, production.path or "", what="model")
        if _reads_tokens(path):  # the encoder: its own tokenizer, not a transform
            probabilities = TokenServingModel(path).probabilities(texts)
            value = evaluate(probabilities, data.dev.labels).metric(metric)
            return ProductionScore(production.version, value, "re-scored on this dev split")
        served = exporting.ServingModel(path)
        transform = ctx.transforms.transform(production.transform)
    except (NotFound, InvalidInput) as exc:  # gone, or a record pointing outside the models
        how = f"recorded on its own dev split: {exc}"
        return ProductionScore(production.version, recorded_metric(production.metrics, metric), how)
    metadata = [dict(c.metadata) for c in dev_comments]
    batch = transform.apply(texts, metadata, unknown_fields="ignore")
    split = SplitData.from_batch(batch, data.dev.labels, n_classes=data.n_classes)
    parts = [served.probabilities(*flat.padded()) for _, flat in split.batches(RESCORE_BATCH_ROWS)]
    value = evaluate(np.concatenate(parts), data.dev.labels).metric(metric)
    return ProductionScore(production.version, value, "re-scored on this dev split")


def _reads_tokens(path: Path) -> bool:
    """True when the version in ``path`` says (in ``metadata.json``) that it reads tokens."""
    try:
        return is_token_model(exporting.read_metadata(path))
    except NotFound:
        return False


def publish(
    ctx: JobContext, candidate: Candidate, decision: BlessingDecision, data: TrainingData
) -> ModelSummary:
    """Record the verdict in the lineage, move a blessed version into place, register it.

    A blessed version is promoted to production when ``auto_promote`` is set, in the
    trainer's settings and in the job's config (a job may only opt out).
    """
    name, version, staging = candidate.name, candidate.version, candidate.staging
    facts = decision.facts.as_dict()
    blessing = {"blessed": decision.blessed, "reason": decision.reason, **facts}
    metadata = {**candidate.metadata, "blessing": blessing}
    exporting.write_metadata(staging, metadata)
    target = exporting.serving_dir(ctx.settings.models_dir, name, version)
    if decision.blessed:
        staging.rename(target)  # atomic: a model server sees the whole version or none
    else:
        target = staging
    registry = ctx.registry
    registry.register(
        name,
        version,
        job=ctx.job.id,
        transform=data.transform,
        label_run=data.label_run,
        metrics=metadata["metrics"],
        params=metadata["hyperparameters"],
        path=str(target),
        data=metadata["data"],
        profile=ProfileReference(**metadata["profile"]) if metadata.get("profile") else None,
    )
    if not decision.blessed:
        return model_summary(registry.unbless(name, version, decision.reason, **facts))
    model = registry.bless(name, version, decision.reason, **facts)
    if ctx.settings.auto_promote and ctx.config.auto_promote:
        why = f"blessed by job {ctx.job.id}: {decision.reason}"
        model = registry.promote(name, version, why, actor=f"job:{ctx.job.id}")
    return model_summary(model)
