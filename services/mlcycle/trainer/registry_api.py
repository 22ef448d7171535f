"""The model registry over REST: list and read model versions and stages, promote one, roll back.

``POST /v1/models/{version}:promote`` and ``POST /v1/models:rollback`` follow
Google's custom-method style (a verb after a colon). They change what the model
server serves, so they need a key with the ``admin`` scope when keys are configured,
and a reason; both the reason and the key's name are kept in the model's history and
in the ``models`` topic event.
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from mlcycle.common.http import OrjsonResponse, RouteAccess, error_responses
from mlcycle.common.keys import Caller
from mlcycle.common.settings import TrainerSettings
from mlcycle.contracts.models import (
    MAX_VERSION,
    MODEL_STATES,
    NAME_PATTERN,
    ModelVersion,
    ServingPointer,
)
from mlcycle.trainer.admin_orders import Reason
from mlcycle.trainer.registry import ModelRegistry


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


class Serving(BaseModel):
    """What one name serves: production (label ``stable``), a rollout's canary and shadow."""

    stable: int | None = Field(description="the production version")
    canary: int | None
    canary_share: float = Field(description="of traffic the canary answers")
    shadow: int | None
    shadow_share: float = Field(description="of traffic the shadow also scores")
    rollout: str | None = Field(description="the rollout canary and shadow belong to")
    previous: list[int] = Field(description="the rollback stack, newest first")


class ModelList(BaseModel):
    """Model versions by name, newest first, the production version and the stages of each name."""

    models: list[ModelVersion]
    production: dict[str, int]
    serving: dict[str, Serving]


class RolledBack(BaseModel):
    """The version served again (restored) and the one taken off (rolled back)."""

    production: ModelVersion
    rolled_back: ModelVersion


def serving_view(pointer: ServingPointer) -> dict[str, object]:
    """A pointer as :class:`Serving` shows it."""
    return {
        "stable": pointer.version,
        "canary": pointer.canary,
        "canary_share": pointer.canary_share if pointer.canary is not None else 0.0,
        "shadow": pointer.shadow,
        "shadow_share": pointer.shadow_share if pointer.shadow is not None else 0.0,
        "rollout": pointer.rollout,
        "previous": list(pointer.previous),
    }


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
        summary="Model versions, newest first, and what each name serves (stable, canary, shadow)",
    )
    def list_models(
        name: str | None = Query(None, pattern=NAME_PATTERN),
        state: str | None = Query(None, max_length=32, description=" | ".join(MODEL_STATES)),
    ) -> OrjsonResponse:
        models = registry.list_versions(name, state)
        pointers = [p for p in registry.serving_pointers() if name is None or p.name == name]
        production = {p.name: p.version for p in pointers if p.version is not None}
        serving = {p.name: serving_view(p) for p in pointers if p.loaded_versions()}
        documents = [model.to_document() for model in models]
        return OrjsonResponse({"models": documents, "production": production, "serving": serving})

    @router.post(
        "/models:rollback",
        response_model=RolledBack,
        responses=changes,
        summary="Roll the production version back and serve the previous one again",
    )
    def rollback(
        request: RollbackRequest = Body(...), caller: Caller = Depends(access.caller)
    ) -> OrjsonResponse:
        name = request.name or settings.model_name
        production, rolled_back = registry.rollback_pair(name, request.reason, actor=caller.name)
        return OrjsonResponse(
            {"production": production.to_document(), "rolled_back": rolled_back.to_document()}
        )

    @router.post(
        "/models/{version}:promote",
        response_model=ModelVersion,
        responses=changes,
        summary="Serve this version; the one it replaces is archived",
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
