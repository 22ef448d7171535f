"""The labeler's REST API: start label runs, read labels and suspected label errors, review.

``POST /v1/label-runs`` answers 202 at once with the run id; the run executes
on a worker thread, one at a time, and ``GET /v1/label-runs/{id}`` shows its
progress, then its figures and diagnostics. Runs left unfinished by a crash
are resumed when the service starts.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Body, Depends, FastAPI, Query
from pydantic import BaseModel, Field

from mlcycle import __version__
from mlcycle.common.errors import NotFound
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
from mlcycle.common.settings import EdgeSettings, LabelerSettings, Settings
from mlcycle.common.store import Store, open_store
from mlcycle.common.store.base import Document
from mlcycle.common.worker import JobWorker
from mlcycle.contracts.access import CONSOLE_OPEN_ROUTES, CONSOLE_SCOPES, route_scopes
from mlcycle.contracts.comments import HumanLabel
from mlcycle.contracts.label_runs import LabelIssue, ReviewItem, RunParams
from mlcycle.contracts.labels import live_run
from mlcycle.contracts.repositories.label_runs import LabelIssues, LabelRuns
from mlcycle.contracts.repositories.labels import Labels
from mlcycle.contracts.repositories.votes import Votes
from mlcycle.featurization.store import TransformStore
from mlcycle.labeler.console import console_router
from mlcycle.labeler.console.admin import TrainerAdmin, trainer_url
from mlcycle.labeler.console.explain import Explainer, inference_url
from mlcycle.labeler.human_labels import HumanLabels, HumanLabelsAccepted
from mlcycle.labeler.lfs import registered
from mlcycle.labeler.runs import LabelRunner

log = logging.getLogger(__name__)

SERVICE = "labeler"


class RunStarted(BaseModel):
    """The run is queued; poll ``GET /v1/label-runs/{id}``."""

    id: str
    status: str
    previous_run: str | None = Field(description="the run whose labels changes are counted from")


def run_worker(runner: LabelRunner, max_queued: int | None = None) -> JobWorker:
    """The thread that executes queued label runs one at a time (at most ``max_queued`` wait)."""
    return JobWorker(runner, name="label-runs", max_queued=max_queued)


def _issue_view(issue: LabelIssue) -> Document:
    """A suspect as the API shows it: the record less its storage fields."""
    return issue.model_dump(mode="json", exclude={"id", "kind", "run"})


def _check_params(params: RunParams) -> None:
    if params.labeling_functions:
        registered(params.task, params.labeling_functions)  # InvalidInput names unknown ones


def _runs_router(store: Store, worker: JobWorker, access: RouteAccess) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["label runs"], dependencies=access.dependencies())
    runs = LabelRuns(store)
    runner: LabelRunner = worker.runner  # type: ignore[assignment]

    @router.post(
        "/label-runs",
        status_code=202,
        response_model=RunStarted,
        responses=error_responses(400, 401, 403, 422, 429),
        summary="Start a label run (returns at once)",
    )
    def start_run(
        params: RunParams = Body(default_factory=RunParams),
        caller: Caller = Depends(access.caller),
    ) -> OrjsonResponse:
        _check_params(params)
        run = worker.accept(lambda: runner.create(params, started_by=caller.name))
        started = RunStarted(id=run.id, status=run.status, previous_run=run.previous_run)
        return OrjsonResponse(started.model_dump(mode="json"), status_code=202)

    @router.get(
        "/label-runs",
        responses=error_responses(401, 403, 422),
        summary="Label runs, newest first",
    )
    def list_runs(
        task: str | None = Query(None, max_length=128),
        limit: int = Query(20, ge=1, le=200),
    ) -> OrjsonResponse:
        newest = runs.newest(task, limit)
        brief = [
            {k: doc.get(k) for k in ("id", "task", "status", "progress", "created_at")}
            for doc in (run.to_document() for run in newest)
        ]
        return OrjsonResponse({"items": brief})

    @router.get(
        "/label-runs/{run_id}",
        responses=error_responses(401, 403, 404),
        summary="A run: status and progress, then figures, diagnostics and review queue",
    )
    def read_run(run_id: str) -> OrjsonResponse:
        return OrjsonResponse(runs.require(run_id).to_document())

    return router


def _labels_router(
    settings: LabelerSettings,
    edge: EdgeSettings,
    store: Store,
    human_labels: HumanLabels,
    access: RouteAccess,
) -> APIRouter:
    """Labels, the review queue, and human labels sent to ``votes_topic`` as trusted votes."""
    router = APIRouter(prefix="/v1", tags=["labels"], dependencies=access.dependencies())
    runs, labels, votes = LabelRuns(store), Labels(store), Votes(store)
    issues = LabelIssues(store)

    def default_run(task: str) -> str:
        """The task's latest finished run, else its live labels."""
        latest = runs.latest(task)
        return latest.id if latest else live_run(task)

    @router.get(
        "/labels/{item_id:path}",
        responses=error_responses(401, 403, 404),
        summary="An item's label (latest finished run, else its live label)",
    )
    def read_label(
        item_id: str,
        task: str = Query(settings.task, max_length=128),
        run: str | None = Query(None, max_length=128, description="a run id, or live-<task>"),
    ) -> OrjsonResponse:
        candidates = [run] if run else [default_run(task), live_run(task)]
        label = labels.first_of_item(candidates, item_id)
        if label is not None:
            return OrjsonResponse(label.to_document())
        raise NotFound(f"no label for item {item_id!r}", details={"runs": candidates})

    @router.get("/labels", responses=error_responses(400, 401, 403, 422), summary="Labels of a run")
    def list_labels(
        run: str | None = Query(None, max_length=128, description="default: the latest run"),
        task: str = Query(settings.task, max_length=128),
        split: str | None = Query(None, pattern="^(train|dev|test)$"),
        limit: int = Query(edge.default_page_size, ge=1, le=edge.max_page_size),
        cursor: str | None = Query(None, max_length=4096),
    ) -> OrjsonResponse:
        run_id = run if run is not None else default_run(task)
        page = labels.page_of_run(run_id, split=split, limit=limit, cursor=cursor or None)
        items = [label.to_document() for label in page.items]
        return OrjsonResponse({"run": run_id, "items": items, "next_cursor": page.next_cursor})

    @router.get(
        "/review-queue",
        responses=error_responses(401, 403, 422),
        summary="The items whose label is most uncertain and would move most with one review",
    )
    def review_queue(
        task: str = Query(settings.task, max_length=128),
        limit: int = Query(50, ge=1, le=settings.review_queue_size),
    ) -> OrjsonResponse:
        latest = runs.latest(task)
        if latest is None:
            return OrjsonResponse({"run": None, "items": []})
        items: list[ReviewItem] = []
        for entry in latest.review_queue or []:
            if len(items) == limit:
                break
            if votes.awaits_review(entry):
                items.append(entry)
        body = {"run": latest.id, "items": [item.model_dump(mode="json") for item in items]}
        return OrjsonResponse(body)

    @router.get(
        "/label-issues",
        responses=error_responses(400, 401, 403, 404, 422),
        summary="A run's suspected label errors (confident learning), most suspect first",
        description="Each: item id, given label, suggested label, label-quality score (low: "
        "likely wrong) and the out-of-sample probability of the given label. `summary` says "
        "how they were found, or why a run has none.",
    )
    def list_label_issues(
        run: str | None = Query(None, max_length=128, description="default: the latest run"),
        task: str = Query(settings.task, max_length=128),
        limit: int = Query(edge.default_page_size, ge=1, le=edge.max_page_size),
        cursor: str | None = Query(None, max_length=4096),
    ) -> OrjsonResponse:
        found = runs.require_succeeded(run) if run is not None else runs.latest(task)
        if found is None:
            return OrjsonResponse({"run": None, "summary": None, "items": [], "next_cursor": None})
        page = issues.page_of_run(found.id, limit=limit, cursor=cursor or None)
        summary = found.label_issues.model_dump(mode="json") if found.label_issues else None
        body = {
            "run": found.id,
            "summary": summary,
            "items": [_issue_view(issue) for issue in page.items],
            "next_cursor": page.next_cursor,
        }
        return OrjsonResponse(body)

    @router.post(
        "/labels",
        status_code=202,
        response_model=HumanLabelsAccepted,
        responses=error_responses(400, 401, 403, 422, 503),
        summary="Store human labels; each counts as a highly reliable voter",
        description="With API keys on, a label's reviewer is the name of the key that sends "
        "it; without keys (or with a bare legacy key) the body's `reviewer` names them.",
    )
    def post_labels(
        labels: HumanLabel | list[HumanLabel] = Body(...),
        caller: Caller = Depends(access.caller),
    ) -> OrjsonResponse:
        batch = labels if isinstance(labels, list) else [labels]
        accepted = human_labels.submit(batch, caller)
        return OrjsonResponse(accepted.model_dump(mode="json"), status_code=202)

    return router


def create_app(
    settings: Settings,
    *,
    store: Store,
    producer: RecordProducer,
    worker: JobWorker,
    keys: KeyRing | None = None,
    explainer: Explainer | None = None,
    trainer: TrainerAdmin | None = None,
) -> FastAPI:
    """The labeler's ASGI app (the caller owns the store, producer and worker).

    ``keys`` defaults to the ones the settings configure; ``explainer`` and ``trainer`` (how
    the console reaches the inference service and the trainer) to the ones they describe.
    """
    ring = keys if keys is not None else key_ring(settings.edge)
    # The console checks its own routes, with the key its login page keeps in a cookie.
    console_routes = CONSOLE_OPEN_ROUTES | frozenset(CONSOLE_SCOPES)
    access = RouteAccess(ring, route_scopes(SERVICE), open_routes=console_routes)
    human_labels = HumanLabels(
        settings.labeler,
        producer,
        topic=settings.kafka.topics.votes_reviewed,
        keys_required=access.keys_required,
    )
    if explainer is None:
        explainer = Explainer(inference_url(settings), settings.edge.service_key)
    if trainer is None:
        trainer = TrainerAdmin(trainer_url(settings))
    app = FastAPI(
        title="mlcycle labeler",
        version=__version__,
        description=(
            "Labels out of crowd votes and labeling functions: label runs with "
            'diagnostics, live labels, review queue. Errors are `{"error": {"code", '
            '"message", "details"}}`.'
        ),
    )
    install_edge(app, service=SERVICE, max_body_bytes=settings.edge.max_body_bytes)
    add_health_routes(app, lambda: {"store": store.ping()})
    app.include_router(_runs_router(store, worker, access))
    app.include_router(_labels_router(settings.labeler, settings.edge, store, human_labels, access))
    app.include_router(console_router(settings, store, human_labels, ring, explainer, trainer))
    return access.verify(app)


def resume_unfinished(store: Store, worker: JobWorker) -> list[str]:
    """Queue the label runs a previous process left queued or running; returns their ids."""
    unfinished = [run.id for run in LabelRuns(store).unfinished()]
    for run_id in unfinished:
        log.info("resuming label run %s", run_id)
        worker.submit(run_id)
    return unfinished


def serve(settings: Settings) -> None:
    """Run the labeler API on ``settings.labeler.port`` until SIGINT/SIGTERM."""
    keys = exposed_key_ring(settings.edge, settings.host, service=SERVICE)
    ensure_topics(settings.kafka)
    store = open_store(settings.store)
    producer = RecordProducer(settings.kafka, client_id=SERVICE)
    runner = LabelRunner(
        settings.labeler,
        store,
        producer,
        topic=settings.kafka.topics.labels,
        transforms=TransformStore(settings.featurizer.artifacts_dir),
    )
    worker = run_worker(runner, settings.edge.max_queued_jobs).start()
    explainer = Explainer(inference_url(settings), settings.edge.service_key)
    trainer = TrainerAdmin(trainer_url(settings))
    try:
        resume_unfinished(store, worker)
        app = create_app(
            settings,
            store=store,
            producer=producer,
            worker=worker,
            keys=keys,
            explainer=explainer,
            trainer=trainer,
        )
        serve_app(app, settings.host, settings.labeler.port, service=SERVICE)
    finally:
        trainer.close()
        explainer.close()
        worker.stop()
        producer.close()
        store.close()
