"""The ``features``, ``search`` and ``blend`` stages: feature sets, trials, the linear companion."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Protocol

from pydantic import ValidationError

from mlcycle.contracts.models import ModelVersion
from mlcycle.contracts.repositories.trials import Trials
from mlcycle.contracts.training import Trial, TrialParams
from mlcycle.trainer.config import SEED
from mlcycle.trainer.data import TrainingData
from mlcycle.trainer.features import VariantFeatures
from mlcycle.trainer.linear import blend_with_linear
from mlcycle.trainer.search import Search, SearchOutcome
from mlcycle.trainer.stages.behaviour import held_out
from mlcycle.trainer.stages.context import JobContext

log = logging.getLogger(__name__)


class Productions(Protocol):
    """Where production models are found (the registry)."""

    def production(self, name: str) -> ModelVersion | None:
        """The version of ``name`` being served, or None."""


def prepare_features(ctx: JobContext) -> VariantFeatures:
    """The job's feature sets, fitted and built when the search first asks for a variant.

    A resumed job reuses the transforms it fitted before; each fit or build is
    announced as the ``features`` stage with what it does.
    """
    return VariantFeatures(
        ctx.transforms,
        ctx.store,
        ctx.job.label_run,
        shard_rows=ctx.environment.shard_rows,
        classes_of=ctx.environment.classes_of,
        known=ctx.job.transforms,
        held_out=held_out(ctx),
        announce=lambda what: ctx.recorder.stage("features", detail=what),
        source_weights=ctx.config.source_weights,
        shuffle_train_labels=ctx.config.shuffle_train_labels,
    )


def run_search(ctx: JobContext, features: VariantFeatures) -> SearchOutcome:
    """Run (or resume) the job's study within what is left of its time budget.

    Each finished trial is stored as it ends, and the job's progress follows.
    """
    ctx.recorder.stage("search")
    job, config = ctx.job, ctx.config
    search = Search(
        job.id,
        config,
        ctx.metric,
        ctx.settings.study_storage,
        weights_dir=ctx.environment.artifacts_dir / "trainer" / job.id,
    )
    trials = Trials(ctx.store)
    started = time.monotonic()
    spent = job.spent_s

    def on_trial(trial: Trial) -> None:
        trials.save(trial)
        ctx.recorder.trial_finished(
            trial,
            trials_done=len(search.finished()),
            best_value=search.best_value(),
            spent_s=spent + time.monotonic() - started,
        )

    if config.preset == "search" and config.first_trial == "production":
        first = start_with_production(search, ctx.registry, job.name)
        if first is not None:
            ctx.recorder.stage("search", detail=f"first trial: {first}'s hyper-parameters")
    outcome = search.run(
        features.data,
        budget_s=max(0.0, config.time_budget_s - spent),
        fixed=SEED if config.preset == "seed" else None,
        on_trial=on_trial,
        stop=ctx.stopping,
    )
    trials.save_all(outcome.trials)
    return outcome


def start_with_production(search: Search, registry: Productions, name: str) -> str | None:
    """Queue the production model's hyper-parameters as ``search``'s first trial; the
    version they come from ("production version 3"), or None when the search starts as
    usual: no production model of ``name``, parameters that are no trial's (a model
    exported by another release), or outside the job's search space (each logged)."""
    production = registry.production(name)
    if production is None:
        log.info("no production model of %s: the search starts as usual", name)
        return None
    source = f"production version {production.version}"
    try:
        params = TrialParams.model_validate(production.params)
    except ValidationError as exc:
        log.warning("%s's parameters are no trial's, not tried first: %s", source, exc)
        return None
    return source if search.start_with(params, source) else None


def blend(ctx: JobContext, outcome: SearchOutcome, data: TrainingData) -> SearchOutcome:
    """The winner blended with its linear companion when that is better on dev."""
    ctx.recorder.stage("blend")
    blended = blend_with_linear(
        outcome.best,
        data,
        metric=ctx.metric,
        soft_labels=ctx.config.soft_labels,
        class_weight=ctx.config.class_weight,
        source_weights=ctx.config.source_weights,
    )
    return dataclasses.replace(outcome, best=blended)
