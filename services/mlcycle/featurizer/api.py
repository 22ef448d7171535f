"""The featurizer's REST API (8003); its gRPC API (50053) runs in the same process.

Both are thin over :class:`~mlcycle.featurizer.service.FeaturizerCore`, so a
text gets the same vector from REST, gRPC, a feature shard or an in-process
``Transform.apply``.
"""

from __future__ import annotations

import logging
from typing import Any, TypedDict

from fastapi import APIRouter, Body, Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from mlcycle import __version__
from mlcycle.common.errors import Forbidden
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
from mlcycle.common.keys import Caller, KeyRing, Scope
from mlcycle.common.settings import Settings
from mlcycle.common.store import Store, open_store
from mlcycle.contracts.access import route_scopes
from mlcycle.contracts.comments import MAX_TEXT_CHARS
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.shards import list_feature_sets, read_manifest
from mlcycle.featurizer.service import Featurized, FeaturizerCore, core_for

log = logging.getLogger(__name__)

SERVICE = "featurizer"


class Instance(BaseModel):
    """One text to featurize, with the metadata the transform was fitted on."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_TEXT_CHARS)
    metadata: dict[str, Any] = Field(default_factory=dict)


class FeaturizeRequest(BaseModel):
    """Texts in; ``transform`` defaults to the current version."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Instance]
    transform: str | None = Field(default=None, max_length=64)


class FitRequest(BaseModel):
    """Fit a transform on a label run's train split (default: the task's latest run)."""

    model_config = ConfigDict(extra="forbid")

    label_run: str | None = Field(default=None, max_length=128)
    task: str | None = Field(default=None, max_length=128)
    config: FeatureConfig = Field(default_factory=FeatureConfig)
    make_current: bool | None = Field(
        default=None,
        description="make the fit the current transform (that needs the admin scope); "
        "default: yes for a caller with admin (or without API keys), no otherwise",
    )


class FeatureSetRequest(BaseModel):
    """Featurize a finished label run into shards (default: current transform)."""

    model_config = ConfigDict(extra="forbid")

    label_run: str = Field(max_length=128)
    transform: str | None = Field(default=None, max_length=64)


class VectorBody(TypedDict):
    """One sparse vector as the REST answer carries it (built for orjson, not validated)."""

    indices: list[int]
    values: list[float]
    truncated: bool


def _vectors(featurized: Featurized) -> list[VectorBody]:
    batch = featurized.batch
    vectors: list[VectorBody] = []
    for i in range(len(batch)):
        indices, values = batch.row(i)
        vectors.append(
            VectorBody(
                indices=indices.tolist(),
                values=values.tolist(),
                truncated=bool(batch.truncated[i]),
            )
        )
    return vectors


def makes_current(request: FitRequest, caller: Caller) -> bool:
    """Whether a fit becomes the current transform; asking for it without ``admin`` is 403."""
    if request.make_current is None:
        return caller.allows(Scope.ADMIN)
    if request.make_current and not caller.allows(Scope.ADMIN):
        raise Forbidden(
            f"API key {caller.name!r} lacks the 'admin' scope that make_current needs: "
            "fit with make_current=false, then have an admin key set the current transform",
            details={"key": caller.name, "required_scope": Scope.ADMIN.value},
        )
    return request.make_current


def _router(core: FeaturizerCore, access: RouteAccess) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=access.dependencies())
    read_errors = error_responses(401, 403, 404)

    @router.post(
        "/featurize",
        # 409: the transform's static embeddings are missing from the artifact store.
        responses=error_responses(400, 401, 403, 404, 409, 413, 422),
        summary="Sparse vectors for texts, with any stored transform version",
    )
    def featurize(request: FeaturizeRequest = Body(...)) -> OrjsonResponse:
        featurized = core.featurize(
            [i.text for i in request.instances],
            [i.metadata for i in request.instances],
            request.transform,
        )
        body = {
            "transform": featurized.version,
            "dim": featurized.batch.dim,
            "vectors": _vectors(featurized),
            "truncated": int(featurized.batch.truncated.sum()),
        }
        return OrjsonResponse(body)

    @router.get(
        "/transforms",
        responses=error_responses(401, 403),
        summary="Stored transform versions and the current one",
    )
    def transforms() -> OrjsonResponse:
        return OrjsonResponse({"current": core.current_version(), "versions": core.versions()})

    @router.get(
        "/transforms/{version}",
        responses=read_errors,
        summary="A transform's metadata and statistics ('current' for the current one)",
    )
    def transform(version: str) -> OrjsonResponse:
        return OrjsonResponse(core.describe(None if version == "current" else version).to_json())

    @router.post(
        "/transforms",
        status_code=201,
        # 409: the config enables static embeddings and the artifact store has none yet.
        responses=error_responses(400, 401, 403, 404, 409, 422),
        summary="Fit a transform on a label run's train split",
    )
    def fit(
        request: FitRequest = Body(default_factory=FitRequest),
        caller: Caller = Depends(access.caller),
    ) -> OrjsonResponse:
        current = makes_current(request, caller)
        fitted, run_id = core.fit(
            request.label_run, request.config, task=request.task, make_current=current
        )
        if current:
            log.info("transform %s made current by %s", fitted.version, caller.name)
        body = {**core.describe(fitted.version).to_json(), "label_run": run_id}
        return OrjsonResponse(body, status_code=201)

    @router.post(
        "/transforms/{version}/current",
        responses=error_responses(401, 403, 404),
        summary="Make a stored transform the current one",
    )
    def make_current(version: str, caller: Caller = Depends(access.caller)) -> OrjsonResponse:
        core.set_current(version)
        log.info("transform %s made current by %s", version, caller.name)
        return OrjsonResponse(core.describe(version).to_json())

    @router.get(
        "/feature-sets",
        responses=error_responses(401, 403),
        summary="Complete feature sets (their manifests)",
    )
    def feature_sets() -> OrjsonResponse:
        items = [manifest.to_json() for manifest in list_feature_sets(core.root)]
        return OrjsonResponse({"items": items})

    @router.post(
        "/feature-sets",
        status_code=201,
        responses=error_responses(400, 401, 403, 404, 422),
        summary="Featurize a finished label run into shards (idempotent)",
    )
    def build(request: FeatureSetRequest = Body(...)) -> OrjsonResponse:
        manifest = core.build_feature_set(request.label_run, request.transform)
        return OrjsonResponse(manifest.to_json(), status_code=201)

    @router.get(
        "/feature-sets/{version}/{label_run}",
        responses=error_responses(400, 401, 403, 404),
        summary="One feature set's manifest",
    )
    def manifest(version: str, label_run: str) -> OrjsonResponse:
        return OrjsonResponse(read_manifest(core.root, version, label_run).to_json())

    return router


def create_app(
    settings: Settings, *, core: FeaturizerCore, store: Store, keys: KeyRing | None = None
) -> FastAPI:
    """The featurizer's ASGI app (the caller owns the store).

    ``keys`` defaults to the ones the settings configure.
    """
    access = RouteAccess(
        keys if keys is not None else key_ring(settings.edge), route_scopes(SERVICE)
    )
    app = FastAPI(
        title="mlcycle featurizer",
        version=__version__,
        description=(
            "Versioned featurization: fit transforms on label runs, featurize texts, build "
            'feature shards. Errors are `{"error": {"code", "message", "details"}}`.'
        ),
    )
    install_edge(app, service=SERVICE, max_body_bytes=settings.edge.max_body_bytes)
    add_health_routes(app, lambda: {"store": store.ping()})
    app.include_router(_router(core, access))
    return access.verify(app)


def serve(settings: Settings) -> None:
    """REST on ``featurizer_port`` and gRPC on ``featurizer_grpc_port`` until SIGINT/SIGTERM."""
    from mlcycle.featurizer.grpc_api import build_grpc_server

    keys = exposed_key_ring(settings.edge, settings.host, service=SERVICE)
    store = open_store(settings.store)
    core = core_for(settings, store)
    grpc_server = build_grpc_server(
        settings.featurizer, core, host=settings.host, edge=settings.edge
    ).start()
    try:
        app = create_app(settings, core=core, store=store, keys=keys)
        serve_app(app, settings.host, settings.featurizer.port, service=SERVICE)
    finally:
        grpc_server.stop(grace=5)
        store.close()
