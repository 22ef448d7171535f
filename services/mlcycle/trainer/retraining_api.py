"""Retraining runs over REST: ask for one, report its stages, follow it, stop it.

``POST /v1/retraining-runs`` answers 201 with the run, or 409 when the policy refuses
it (a run already running, a trigger without its evidence, the cooldown, the budget):
the refusal is recorded as a ``skipped`` run and the error's details carry it. The
runner reports each stage on ``POST /v1/retraining-runs/{id}/stages`` (``train``
scope, like starting a training job); ``:stop`` needs ``admin``; reads need ``read``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from mlcycle.common.errors import Forbidden
from mlcycle.common.http import OrjsonResponse, RouteAccess, error_responses
from mlcycle.common.keys import Caller, Scope
from mlcycle.common.settings import TrainerSettings
from mlcycle.contracts.models import NAME_PATTERN
from mlcycle.contracts.retraining import (
    RetrainingOverview,
    RetrainingRun,
    StageName,
    StageStatus,
    Trigger,
)
from mlcycle.trainer.admin_orders import add_order_route
from mlcycle.trainer.retraining import Retraining

RUN_ID = r"^rt-[0-9T]{15}-[0-9a-f]{6}$"
# What a run's evidence and a stage's detail may hold: a small JSON object.
MAX_DETAIL_KEYS = 50


class RunRequest(BaseModel):
    """Ask for a retraining run; the policy decides whether it starts."""

    model_config = ConfigDict(extra="forbid")

    trigger: Trigger
    why: dict[str, JsonValue] = Field(
        default_factory=dict,
        max_length=MAX_DETAIL_KEYS,
        description="the evidence: drift needs `signals` (the alarming ones); new_votes is "
        "counted by the trainer from `votes`",
    )
    votes: int | None = Field(
        None, ge=0, description="votes stored now (the collector's count); default: counted here"
    )
    name: str | None = Field(None, pattern=NAME_PATTERN, description="default: the task's model")
    force: bool = Field(
        False, description="admin only: pass over the cooldown and the budget (never a running run)"
    )


class StageReport(BaseModel):
    """A stage started (``running``; again: still running, with news) or ended."""

    model_config = ConfigDict(extra="forbid")

    name: StageName
    status: StageStatus
    detail: dict[str, JsonValue] = Field(
        default_factory=dict,
        max_length=MAX_DETAIL_KEYS,
        description="label_run, feature_set, job, version, rollout, phase...",
    )
    error: Annotated[str, StringConstraints(max_length=2000)] | None = None


def retraining_router(
    settings: TrainerSettings, retraining: Retraining, access: RouteAccess
) -> APIRouter:
    """``/v1/retraining-runs``: ask for a run, list and read runs, report stages, stop."""
    router = APIRouter(prefix="/v1", tags=["retraining"], dependencies=access.dependencies())
    changes = error_responses(400, 401, 403, 404, 409, 422)

    def answer(run: RetrainingRun, status: int = 200) -> OrjsonResponse:
        return OrjsonResponse(run.to_document(), status_code=status)

    @router.post(
        "/retraining-runs",
        response_model=RetrainingRun,
        status_code=201,
        responses=changes,
        summary="Start a retraining run if the policy allows it (409 says why not)",
    )
    def request_run(
        request: RunRequest = Body(...), caller: Caller = Depends(access.caller)
    ) -> OrjsonResponse:
        if request.force and not caller.allows(Scope.ADMIN):
            raise Forbidden("passing over the cooldown and the budget (force) needs `admin`")
        run = retraining.request(
            request.name or settings.model_name,
            request.trigger,
            actor=caller.name,
            why=request.why,
            votes=request.votes,
            force=request.force,
        )
        return answer(run, 201)

    @router.get(
        "/retraining-runs",
        response_model=RetrainingOverview,
        responses=error_responses(401, 403, 422),
        summary="The policy, what it allows now, and the runs, newest first",
    )
    def list_runs(
        name: str | None = Query(None, pattern=NAME_PATTERN),
        limit: int = Query(20, ge=1, le=200),
    ) -> OrjsonResponse:
        overview = retraining.overview(name or settings.model_name, limit)
        return OrjsonResponse(overview.model_dump(mode="json"))

    @router.get(
        "/retraining-runs/{run_id}",
        response_model=RetrainingRun,
        responses=error_responses(401, 403, 404, 422),
        summary="One run: trigger, evidence, stages",
    )
    def read_run(run_id: str = Path(pattern=RUN_ID)) -> OrjsonResponse:
        return answer(retraining.get(run_id))

    @router.post(
        "/retraining-runs/{run_id}/stages",
        response_model=RetrainingRun,
        responses=changes,
        summary="The runner reports a stage's start, progress or end",
    )
    def report_stage(
        run_id: str = Path(pattern=RUN_ID),
        report: StageReport = Body(...),
        caller: Caller = Depends(access.caller),
    ) -> OrjsonResponse:
        run = retraining.report(
            run_id,
            report.name,
            report.status,
            detail=report.detail,
            error=report.error,
            actor=caller.name,
        )
        return answer(run)

    add_order_route(
        router,
        access,
        "/retraining-runs/{run_id}:stop",
        {"stop": retraining.stop},
        answer,
        id_pattern=RUN_ID,
        response_model=RetrainingRun,
        summary="Stop a run at its next stage boundary (its running rollout is aborted now)",
        name="stop_run",
    )
    return router
