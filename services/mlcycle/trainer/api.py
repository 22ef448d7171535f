"""The trainer's REST API (8004): training jobs and the model registry.

``POST /v1/jobs`` answers at once with the job id; a worker thread runs the
job and ``GET /v1/jobs/{id}`` shows its stage and search progress. Jobs a
previous process left unfinished (or interrupted at a checkpoint by SIGTERM)
are queued again at start-up and resume their Optuna study. When
``train_on_new_label_runs`` is set, a watcher starts a job with the default
config for every new label run of the task.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fastapi import APIRouter, Body, Depends, FastAPI, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from mlcycle import __version__
from mlcycle.common.errors import NotFound
from mlcycle.common.files import confined
from mlcycle.common.http import (
    OrjsonResponse,
    RouteAccess,
    add_health_routes,
    error_responses,
    exposed_key_ring,
    install_edge,
    key_ring,
    serve_app,
)
from mlcycle.common.kafka.admin import ensure_topics
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.keys import Caller, KeyRing
from mlcycle.common.settings import Settings
from mlcycle.common.store import Store, open_store
from mlcycle.common.worker import JobWorker
from mlcycle.contracts.access import route_scopes
from mlcycle.contracts.models import ModelEvent
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.contracts.repositories.training_jobs import TrainingJobs
from mlcycle.contracts.repositories.trials import Trials
from mlcycle.contracts.training import JobConfig, JobProgress, ModelSummary, TrainingJob
from mlcycle.trainer.jobs import JobRunner
from mlcycle.trainer.registry import Emit, ModelRegistry
from mlcycle.trainer.registry_api import models_router
from mlcycle.trainer.retraining import Retraining
from mlcycle.trainer.retraining_api import retraining_router
from mlcycle.trainer.retraining_policy import load_policy
from mlcycle.trainer.rollout_signals import NoSignals, default_policy, open_signals
from mlcycle.trainer.rollout_steps import settle_time
from mlcycle.trainer.rollouts import RolloutController
from mlcycle.trainer.rollouts_api import rollouts_router
from mlcycle.trainer.stages.context import JobEnvironment

log = logging.getLogger(__name__)

SERVICE = "trainer"
LABEL_RUN_POLL_S = 10.0
# Who submits the jobs the trainer starts by itself; the colon keeps it apart from key names.
WATCHER = "system:label-run-watcher"


class JobStarted(BaseModel):
    """A job was queued; poll ``GET /v1/jobs/{id}``."""

    id: str
    status: str
    label_run: str


class JobBrief(BaseModel):
    """A job as ``GET /v1/jobs`` lists it: status, progress and, when done, its model."""

    id: str
    status: str
    label_run: str | None
    progress: JobProgress | None
    model: ModelSummary | None
    error: str | None
    created_at: str | None

    @classmethod
    def of(cls, job: TrainingJob) -> JobBrief:
        """The brief of ``job``."""
        return cls(
            id=job.id,
            status=job.status,
            label_run=job.label_run,
            progress=job.progress,
            model=job.result.model if job.result else None,
            error=job.error,
            created_at=job.created_at,
        )


def _jobs_router(
    store: Store, worker: JobWorker, access: RouteAccess, reports_dir: Path
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["jobs"], dependencies=access.dependencies())
    runner: JobRunner = worker.runner  # type: ignore[assignment]
    jobs, trials_of = TrainingJobs(store), Trials(store)
    read_errors = error_responses(401, 403, 404)

    @router.post(
        "/jobs",
        status_code=202,
        response_model=JobStarted,
        responses=error_responses(400, 401, 403, 404, 422, 429),
        summary="Start a training job: search, evaluate, bless, export (returns at once)",
    )
    def start_job(
        config: JobConfig = Body(default_factory=JobConfig),
        caller: Caller = Depends(access.caller),
    ) -> OrjsonResponse:
        job = worker.accept(lambda: runner.create(config, submitted_by=caller.name))
        body = JobStarted(id=job.id, status=job.status, label_run=job.label_run)
        return OrjsonResponse(body.model_dump(mode="json"), status_code=202)

    @router.get(
        "/jobs", responses=error_responses(401, 403, 422), summary="Training jobs, newest first"
    )
    def list_jobs(limit: int = Query(20, ge=1, le=200)) -> OrjsonResponse:
        newest = jobs.newest(limit).items
        briefs = [JobBrief.of(job).model_dump(mode="json") for job in newest]
        return OrjsonResponse({"jobs": briefs, "active": worker.active})

    @router.get(
        "/jobs/{job_id}",
        responses=read_errors,
        summary="A job's stage, search progress and, when done, its result",
    )
    def job(job_id: str) -> OrjsonResponse:
        return OrjsonResponse(jobs.require(job_id).to_document())

    @router.get(
        "/jobs/{job_id}/trials",
        responses=read_errors,
        summary="Every finished trial of a job: parameters, dev metric, state, time",
    )
    def trials(job_id: str) -> OrjsonResponse:
        jobs.require(job_id)
        found = [trial.to_document() for trial in trials_of.of_job(job_id)]
        return OrjsonResponse({"job": job_id, "trials": found})

    @router.get(
        "/jobs/{job_id}/report",
        # Only the 200 is HTML; errors keep the JSON error shape like every other route.
        responses={
            200: {"content": {"text/html": {"schema": {"type": "string"}}}},
            **error_responses(400, 401, 403, 404),
        },
        summary="The job's HTML report (plots, trials, metrics)",
    )
    def report(job_id: str) -> HTMLResponse:
        found = jobs.require(job_id)
        if found.result is None:
            raise NotFound(f"job {job_id} has no report yet ({found.status})")
        path = confined(reports_dir, found.result.report, what="report")
        if not path.is_file():
            raise NotFound(f"job {job_id} has no report yet ({found.status})")
        return HTMLResponse(path.read_text(encoding="utf-8"))

    return router


class LabelRunWatcher:
    """Starts a default job for each label run of ``task`` that finishes after start-up."""

    def __init__(self, task: str, store: Store, worker: JobWorker) -> None:
        self.task = task
        self.runs = LabelRuns(store)
        self.worker = worker
        self._stop = threading.Event()
        current = self.runs.latest(task)
        self._seen = current.id if current else None
        self._thread = threading.Thread(target=self._watch, name="label-run-watcher", daemon=True)

    def start(self) -> LabelRunWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> str | None:
        """Start a job if a new label run finished; returns the job id."""
        run = self.runs.latest(self.task)
        if run is None or run.id == self._seen:
            return None
        runner: JobRunner = self.worker.runner  # type: ignore[assignment]
        # A full queue raises before the run counts as seen: the next check tries again.
        job = self.worker.accept(
            lambda: runner.create(JobConfig(label_run=run.id), submitted_by=WATCHER)
        )
        self._seen = run.id
        log.info("new label run %s: started training job %s", run.id, job.id)
        return job.id

    def _watch(self) -> None:
        while not self._stop.wait(LABEL_RUN_POLL_S):
            try:
                self.check()
            except Exception:
                log.exception("watching for new label runs failed; trying again")


def kafka_emitter(topic: str, producer: RecordProducer) -> Emit:
    """Registry events to ``topic`` (the ``models`` topic), keyed by model name."""

    def emit(event: ModelEvent) -> None:
        producer.send_batch(topic, [event.to_message()])

    return emit


def resume_unfinished(jobs: TrainingJobs, worker: JobWorker) -> list[str]:
    """Queue the jobs a previous process left queued or running; returns their ids."""
    unfinished = [job.id for job in jobs.unfinished()]
    for job_id in unfinished:
        log.info("resuming %s %s", jobs.kind, job_id)
        worker.submit(job_id)
    return unfinished


def create_app(
    settings: Settings,
    *,
    store: Store,
    worker: JobWorker,
    registry: ModelRegistry,
    rollouts: RolloutController | None = None,
    retraining: Retraining | None = None,
    keys: KeyRing | None = None,
) -> FastAPI:
    """The trainer's ASGI app (the caller owns the store, worker and registry).

    ``keys`` defaults to the ones the settings configure.
    """
    access = RouteAccess(
        keys if keys is not None else key_ring(settings.edge), route_scopes(SERVICE)
    )
    app = FastAPI(
        title="mlcycle trainer",
        version=__version__,
        description=(
            "Training jobs (hyper-parameter search, evaluation, blessing, SavedModel export) "
            "and the model registry (versions, promotion, rollback, rollouts, retraining runs). "
            "Errors are "
            '`{"error": {"code", "message", "details"}}`.'
        ),
    )
    install_edge(app, service=SERVICE, max_body_bytes=settings.edge.max_body_bytes)
    add_health_routes(app, lambda: {"store": store.ping()})
    reports_dir = JobEnvironment.of(settings).reports_dir
    app.include_router(_jobs_router(store, worker, access, reports_dir))
    app.include_router(models_router(settings.trainer, registry, access))
    if rollouts is None:  # an app without live signals: every rollout holds on missing data
        rollouts = RolloutController(registry, store, NoSignals())
    app.include_router(rollouts_router(settings.trainer, rollouts, access))
    if retraining is None:
        retraining = Retraining(
            store, load_policy(settings.rollouts), registry=registry, rollouts=rollouts
        )
    app.include_router(retraining_router(settings.trainer, retraining, access))
    return access.verify(app)


def serve(settings: Settings) -> None:
    """Run the trainer API on ``settings.trainer.port`` until SIGINT/SIGTERM."""
    keys = exposed_key_ring(settings.edge, settings.host, service=SERVICE)
    ensure_topics(settings.kafka)
    store = open_store(settings.store)
    producer = RecordProducer(settings.kafka, client_id=SERVICE)
    trainer = settings.trainer
    registry = ModelRegistry(trainer, store, kafka_emitter(settings.kafka.topics.models, producer))
    registry.write_serving_config()  # the file follows the store, even after a crash
    signals = open_signals(settings)
    rollouts = RolloutController(
        registry,
        store,
        signals,
        default_policy=default_policy(settings.rollouts),
        settle_s=settle_time(settings.rollouts.evidence_flush_s),
    ).start_ticking(settings.rollouts.tick_s)
    retraining = Retraining(
        store, load_policy(settings.rollouts), registry=registry, rollouts=rollouts
    )
    stopping = threading.Event()
    runner = JobRunner(trainer, store, registry, JobEnvironment.of(settings), stopping=stopping)
    worker = JobWorker(
        runner, name="train-jobs", max_queued=settings.edge.max_queued_jobs, stopping=stopping
    ).start()
    watcher = (
        LabelRunWatcher(settings.labeler.task, store, worker)
        if trainer.train_on_new_label_runs
        else None
    )
    try:
        resume_unfinished(TrainingJobs(store), worker)
        if watcher is not None:
            watcher.start()
        app = create_app(
            settings,
            store=store,
            worker=worker,
            registry=registry,
            rollouts=rollouts,
            retraining=retraining,
            keys=keys,
        )
        serve_app(app, settings.host, settings.trainer.port, service=SERVICE)
    finally:
        # SIGTERM: the API stopped taking work; the running job stops at its next checkpoint.
        if watcher is not None:
            watcher.stop()
        rollouts.stop()
        signals.close()
        if not worker.shutdown(trainer.shutdown_grace_s):
            log.warning("the running job did not reach a checkpoint in time; it resumes anyway")
        producer.close()
        store.close()
