"""The ``features``, ``search`` and ``blend`` stages: feature sets, trials, the linear companion."""

from __future__ import annotations

import dataclasses
import time

from mlcycle.contracts.repositories.trials import Trials
from mlcycle.contracts.training import Trial
from mlcycle.trainer.config import SEED
from mlcycle.trainer.data import TrainingData
from mlcycle.trainer.features import VariantFeatures
from mlcycle.trainer.linear import blend_with_linear
from mlcycle.trainer.search import Search, SearchOutcome
from mlcycle.trainer.stages.behaviour import held_out
from mlcycle.trainer.stages.context import JobContext


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

    outcome = search.run(
        features.data,
        budget_s=max(0.0, config.time_budget_s - spent),
        fixed=SEED if config.preset == "seed" else None,
        on_trial=on_trial,
        stop=ctx.stopping,
    )
    trials.save_all(outcome.trials)
    return outcome


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
