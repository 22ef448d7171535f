"""The model registry over REST: list and read model versions, promote one, roll back.

``POST /v1/models/{version}:promote`` and ``POST /v1/models:rollback`` follow
Google's custom-method style (a verb after a colon). They change what the model
server serves, so they need a key with the ``admin`` scope when keys are configured,
and a reason; both the reason and the key's name are kept in the model's history and
in the ``models`` topic event.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mlcycle.common.http import OrjsonResponse, RouteAccess, error_responses
from mlcycle.common.keys import Caller
from mlcycle.common.settings import TrainerSettings
from mlcycle.contracts.models import MAX_VERSION, MODEL_STATES, NAME_PATTERN, ModelVersion
from mlcycle.trainer.registry import ModelRegistry

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class PromoteRequest(BaseModel):
    """Serve this version; ``force`` allows a candidate or unblessed one."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="why; kept in the model's history")
    name: str | None = Field(default=None, pattern=NAME_PATTERN, description="default: the task's")
    force: bool = Field(default=False, description="promote even if not blessed")


class RollbackRequest(BaseModel):
    """Serve the previous production version again."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="why; kept in the model's history")
    name: str | None = Field(default=None, pattern=NAME_PATTERN, description="default: the task's")


class ModelList(BaseModel):
    """Model versions by name, newest first, and the version each name serves."""

    models: list[ModelVersion]
    production: dict[str, int]


class RolledBack(BaseModel):
    """The version served again and the one taken off."""

    production: ModelVersion
    retired: ModelVersion


def models_router(
    settings: TrainerSettings, registry: ModelRegistry, access: RouteAccess
) -> APIRouter:
    """``/v1/models``: list, read, promote, roll back (``settings.model_name`` by default)."""
    router = APIRouter(prefix="/v1", tags=["models"], dependencies=access.dependencies())
    changes = error_responses(400, 401, 403, 404, 422)
    name_query = Query(
        settings.model_name, pattern=NAME_PATTERN, description="the served model name"
    )

    @router.get(
        "/models",
        response_model=ModelList,
        responses=error_responses(400, 401, 403, 422),
        summary="Model versions, newest first, and the production version of each name",
    )
    def list_models(
        name: str | None = Query(None, pattern=NAME_PATTERN),
        state: str | None = Query(None, max_length=32, description=" | ".join(MODEL_STATES)),
    ) -> OrjsonResponse:
        models = registry.list_versions(name, state)
        production = registry.serving_versions()
        if name is not None:
            production = {k: v for k, v in production.items() if k == name}
        documents = [model.to_document() for model in models]
        return OrjsonResponse({"models": documents, "production": production})

    @router.post(
        "/models:rollback",
        response_model=RolledBack,
        responses=changes,
        summary="Retire the serving version and serve the previous one again",
    )
    def rollback(
        request: RollbackRequest = Body(...), caller: Caller = Depends(access.caller)
    ) -> OrjsonResponse:
        name = request.name or settings.model_name
        production, retired = registry.rollback_pair(name, request.reason, actor=caller.name)
        return OrjsonResponse(
            {"production": production.to_document(), "retired": retired.to_document()}
        )

    @router.post(
        "/models/{version}:promote",
        response_model=ModelVersion,
        responses=changes,
        summary="Serve this version; the one it replaces is retired",
    )
    def promote(
        version: int = Path(ge=1, le=MAX_VERSION),
        request: PromoteRequest = Body(...),
        caller: Caller = Depends(access.caller),
    ) -> OrjsonResponse:
        name = request.name or settings.model_name
        model = registry.promote(
            name, version, request.reason, force=request.force, actor=caller.name
        )
        return OrjsonResponse(model.to_document())

    @router.get(
        "/models/{version}",
        response_model=ModelVersion,
        responses=error_responses(401, 403, 404, 422),
        summary="One model version: lineage, metrics, blessing, state and history",
    )
    def read_model(
        version: int = Path(ge=1, le=MAX_VERSION), name: str = name_query
    ) -> OrjsonResponse:
        return OrjsonResponse(registry.get(name, version).to_document())

    return router
