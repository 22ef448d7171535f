"""Training jobs: search → threshold → evaluate → behaviour → export → bless → report, resumable.

A job record (:class:`~mlcycle.contracts.training.TrainingJob`) holds the
config, the stage, the progress of the search and, at the end, the result
with the model version and its blessing. Each finished trial is a record of
its own. Executing a job again after a crash picks it up where it stopped:
the Optuna study keeps the finished trials, the winner's weights are on disk,
and an export that was allocated a version reuses it.

:class:`JobRunner` creates jobs and runs their stages (:mod:`mlcycle.trainer.stages`)
in order; each stage records itself in the job's progress. Between the search
(and blend) and the evaluation, the ``threshold`` stage corrects the winner's
scores for the traffic it will serve and picks the served threshold; after the
evaluation, the ``behaviour`` stage scores the behavioural suite with the winner.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import UTC, datetime

from mlcycle.common.errors import NotFound
from mlcycle.common.settings import TrainerSettings
from mlcycle.common.store import Store
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.repositories.training_jobs import TrainingJobs
from mlcycle.contracts.training import (
    JobConfig,
    JobProgress,
    JobResult,
    ModelSummary,
    TrainingJob,
    new_job_id,
)
from mlcycle.evaluation.behaviour import SuiteResult
from mlcycle.featurization.store import TransformStore
from mlcycle.trainer.data import TrainingData
from mlcycle.trainer.fit import FitResult
from mlcycle.trainer.progress import JobInterrupted, JobRecorder, ProgressHook
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.stages.behaviour import score_candidate
from mlcycle.trainer.stages.bless import judge, publish
from mlcycle.trainer.stages.context import JobContext, JobEnvironment
from mlcycle.trainer.stages.encoder import (
    EncoderRun,
    consider_encoder,
    encoder_only,
    encoder_threshold,
    export_encoder_candidate,
    judge_encoder,
)
from mlcycle.trainer.stages.evaluate import Evaluated, evaluate_selected
from mlcycle.trainer.stages.export import export_candidate, judged_before
from mlcycle.trainer.stages.report import write_job_report
from mlcycle.trainer.stages.search import blend, prepare_features, run_search
from mlcycle.trainer.stages.threshold import threshold

log = logging.getLogger(__name__)


class JobRunner:
    """Creates and executes training jobs against one store, artifact store and registry.

    ``environment`` is what jobs take from outside the trainer's section (the
    artifact store, the default task, ...); ``transforms`` defaults to the
    artifact store's. Setting ``stopping`` (a shutdown) stops the running job at
    its next checkpoint, recorded ``interrupted`` for the next process to resume.
    """

    def __init__(
        self,
        settings: TrainerSettings,
        store: Store,
        registry: ModelRegistry,
        environment: JobEnvironment,
        *,
        transforms: TransformStore | None = None,
        on_progress: ProgressHook | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.stopping = stopping or threading.Event()
        self.settings = settings
        self.environment = environment
        self.store = store
        self.jobs = TrainingJobs(store)
        self.registry = registry
        self.transforms = transforms or TransformStore(environment.artifacts_dir)
        self.on_progress = on_progress

    def create(self, config: JobConfig, *, submitted_by: str | None = None) -> TrainingJob:
        """Check what the job needs exists, then record it as queued (and who asked)."""
        task = config.task or self.environment.default_task
        runs = LabelRuns(self.store)
        if config.label_run is not None:
            run = runs.require_succeeded(config.label_run)
        else:
            latest = runs.latest(task)
            if latest is None:
                raise NotFound(f"no finished label run for task {task!r}: run `mlcycle label`")
            run = latest
        now = datetime.now(UTC)
        job = TrainingJob(
            id=new_job_id(now),
            name=config.name or self.settings.model_name,
            task=run.task or task,
            label_run=run.id,
            config=config,
            created_at=now.isoformat(),
            updated_at=now.isoformat(),
            progress=JobProgress(
                stage="queued",
                trials_done=0,
                # The encoder preset runs no search: no trials to count.
                trials_total=None if config.preset == "encoder" else config.trials,
            ),
            submitted_by=submitted_by,
        )
        return self.jobs.save(job)

    def execute(self, job_id: str) -> TrainingJob:
        """Run (or resume) the job to its end; a failure is recorded with its reason."""
        job = self.jobs.require(job_id)
        if job.finished:
            return job
        recorder = JobRecorder(self.jobs, job, self.on_progress)
        recorder.started()
        context = JobContext(
            self.settings,
            self.environment,
            self.store,
            self.registry,
            self.transforms,
            recorder,
            self.stopping,
        )
        try:
            result = run_stages(context)
        except JobInterrupted:
            log.info(
                "training job %s stopped at a checkpoint; it resumes at the next start", job_id
            )
            return recorder.interrupted()
        except Exception as exc:
            log.exception("training job %s failed", job_id)
            return recorder.finished("failed", error=str(exc) or type(exc).__name__)
        return recorder.finished("succeeded", result=result)


def run_stages(ctx: JobContext) -> JobResult:
    """Every stage of the job in order; the job's result."""
    features = prepare_features(ctx)
    encoder: EncoderRun | None = None
    if ctx.config.preset == "encoder":
        # The feature set gives the splits and labels; the encoder reads their texts.
        data = features.data("current")
        outcome, encoder = encoder_only(ctx, data)
    else:
        outcome = run_search(ctx, features)
        data = features.data(outcome.best.params.features)
    ctx.recorder.remember(transforms=features.transforms)
    if ctx.config.preset == "search" and ctx.config.blend_linear:
        outcome = blend(ctx, outcome, data)
    if ctx.config.preset == "search" and ctx.config.consider_encoder:
        ctx.checkpoint()
        outcome, encoder = consider_encoder(ctx, outcome, data)
    chosen = encoder if encoder is not None and outcome.best is encoder.result else None
    if chosen is not None:  # the encoder's scores are corrected in its own export
        chosen = encoder_threshold(ctx, chosen, data)
        outcome = dataclasses.replace(outcome, best=chosen.result)
    else:
        outcome = threshold(ctx, outcome, data)
    ctx.checkpoint()
    best = outcome.best
    evaluated = evaluate_selected(ctx, best, data)
    behaviour = score_candidate(ctx, best, data, evaluated)
    ctx.checkpoint()  # past here, export and bless run to the end (they are claimed once)
    model = None
    if ctx.config.bless:
        model = export_and_bless(ctx, best, data, evaluated, behaviour, chosen)
    summary = encoder.summary if encoder is not None else None
    report = write_job_report(ctx, outcome, data, evaluated, model, behaviour, encoder=summary)
    return JobResult(
        metric=ctx.metric,
        best_trial=outcome.best_trial,
        params=best.params,
        blend=best.blend,
        encoder=summary,
        transform=data.transform,
        dev=evaluated.dev.to_dict(),
        test=evaluated.test.to_dict() if evaluated.test else None,
        model=model,
        report=str(report),
        search_seconds=outcome.seconds,
        behaviour=behaviour.summary() if behaviour is not None else None,
    )


def export_and_bless(
    ctx: JobContext,
    best: FitResult,
    data: TrainingData,
    evaluated: Evaluated,
    behaviour: SuiteResult | None = None,
    encoder: EncoderRun | None = None,
) -> ModelSummary:
    """Export the winner, judge it and register the verdict (once, even across restarts).

    ``encoder`` is the encoder variant when it is the winner: its export reads tokens.
    """
    judged = judged_before(ctx)
    if judged is not None:
        return judged
    if encoder is not None:
        candidate = export_encoder_candidate(ctx, encoder, data, evaluated, behaviour)
        decision = judge_encoder(ctx, candidate, encoder, data, evaluated, behaviour)
        return publish(ctx, candidate, decision, data)
    candidate = export_candidate(ctx, best, data, evaluated, behaviour)
    decision = judge(ctx, candidate, best, data, evaluated, behaviour)
    return publish(ctx, candidate, decision, data)
