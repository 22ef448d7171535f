"""Rollouts over REST: start one, follow it with its comparison, and an admin's orders.

``GET /v1/rollouts[/{id}]`` show each rollout with the comparison its next decision
would see (production against the candidate: agreement, score deltas, latency,
errors, drift alarms, realized quality and the sequential test). Starting a rollout
and the orders (``:pause``, ``:resume``, ``:force``, ``:abort``) change what is
served, so they need the ``admin`` scope; the key's name is kept with the decision.
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from mlcycle.common.http import OrjsonResponse, RouteAccess, error_responses
from mlcycle.common.keys import Caller
from mlcycle.common.settings import TrainerSettings
from mlcycle.contracts.models import MAX_VERSION, NAME_PATTERN
from mlcycle.contracts.rollouts import Rollout, RolloutList, RolloutPolicy, RolloutView
from mlcycle.trainer.admin_orders import Reason, add_order_route
from mlcycle.trainer.rollouts import RolloutController

ROLLOUT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,160}$"


class StartRollout(BaseModel):
    """Try ``version`` on live traffic against the production version."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_VERSION)
    reason: Reason = Field(description="why; kept with the rollout's first decision")
    name: str | None = Field(default=None, pattern=NAME_PATTERN, description="default: the task's")
    policy: RolloutPolicy | None = Field(default=None, description="default: the service's")
    force: bool = Field(default=False, description="start even if the version is not blessed")


def rollouts_router(
    settings: TrainerSettings, controller: RolloutController, access: RouteAccess
) -> APIRouter:
    """``/v1/rollouts``: start, list, read, and an admin's orders."""
    router = APIRouter(prefix="/v1", tags=["rollouts"], dependencies=access.dependencies())
    changes = error_responses(400, 401, 403, 404, 409, 422)

    def view(rollout: Rollout) -> dict[str, object]:
        comparison = controller.comparison(rollout) if rollout.active else None
        return {
            "rollout": rollout.to_document(),
            "comparison": comparison.model_dump(mode="json") if comparison else None,
        }

    @router.post(
        "/rollouts",
        response_model=RolloutView,
        status_code=201,
        responses=changes,
        summary="Try a version in shadow, then as a canary, then in production",
    )
    def start(
        request: StartRollout = Body(...), caller: Caller = Depends(access.caller)
    ) -> OrjsonResponse:
        rollout = controller.start(
            request.name or settings.model_name,
            request.version,
            reason=request.reason,
            actor=caller.name,
            policy=request.policy,
            force=request.force,
        )
        return OrjsonResponse(view(rollout), status_code=201)

    @router.get(
        "/rollouts",
        response_model=RolloutList,
        responses=error_responses(401, 403, 422),
        summary="Rollouts, newest first, each running one with its comparison",
    )
    def list_rollouts(
        name: str | None = Query(None, pattern=NAME_PATTERN),
        active: bool = Query(False, description="only running or paused rollouts"),
        limit: int = Query(20, ge=1, le=200),
    ) -> OrjsonResponse:
        found = controller.listing(name, active=active)[:limit]
        return OrjsonResponse({"rollouts": [view(r) for r in found]})

    @router.get(
        "/rollouts/{rollout_id}",
        response_model=RolloutView,
        responses=error_responses(401, 403, 404, 422),
        summary="One rollout: its decisions with their evidence, and its live comparison",
    )
    def read_rollout(rollout_id: str = Path(pattern=ROLLOUT_ID)) -> OrjsonResponse:
        return OrjsonResponse(view(controller.get(rollout_id)))

    orders = {
        "pause": controller.pause,
        "resume": controller.resume,
        "force": controller.force,
        "abort": controller.abort,
    }
    add_order_route(
        router,
        access,
        "/rollouts/{rollout_id}:{order}",
        orders,
        lambda rollout: OrjsonResponse(view(rollout)),
        id_pattern=ROLLOUT_ID,
        response_model=RolloutView,
        summary="Pause, resume, force one step, or abort a rollout",
        name="steer",
    )
    return router
