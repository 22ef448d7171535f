"""The inference REST API (8000): ``POST /v1/predict`` and TF Serving's ``:predict`` shape.

Thin over :class:`~mlcycle.inference.batching.RequestBatcher`. Bodies are read
with a size limit and parsed with orjson; scoring runs on the event loop with
asyncio clients of Redis and the model server, concurrent requests sharing
their cache reads and ``Predict`` calls, so no request waits for a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import FastAPI, Path, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from mlcycle import __version__
from mlcycle.common.errors import MlcycleError, NotFound
from mlcycle.common.http import (
    OrjsonResponse,
    RouteAccess,
    add_health_routes,
    error_responses,
    exposed_key_ring,
    install_edge,
    key_ring,
    read_body,
    serve_app,
)
from mlcycle.common.http.body import shared_error_shape
from mlcycle.common.keys import KeyRing
from mlcycle.common.settings import Settings
from mlcycle.contracts.access import route_scopes
from mlcycle.contracts.perspective import AnalyzeCommentRequest
from mlcycle.inference.access import CallerGate, RateLimited, rate_limited_handler
from mlcycle.inference.analyze import Analyzer
from mlcycle.inference.batching import RequestBatcher
from mlcycle.inference.explain import Explainer
from mlcycle.inference.explain_async import (
    ExplainBatcher,
    ExplainedPredictions,
    predict_and_explain,
)
from mlcycle.inference.feedback import ScoreRecorder as Recorder
from mlcycle.inference.feedback_routes import add_feedback_routes
from mlcycle.inference.lineage import Lineage, LineageReader
from mlcycle.inference.monitoring_routes import add_live_rate_route, add_monitoring_routes
from mlcycle.inference.perspective import add_perspective_route, is_perspective_path
from mlcycle.inference.perspective import render as render_perspective_error
from mlcycle.inference.runtime import InferenceRuntime, served_model
from mlcycle.inference.schemas import (
    PredictRequest,
    PredictResponse,
    TfColumnarRequest,
    TfRowRequest,
    parse_predict,
    parse_tf_predict_ids,
)
from mlcycle.inference.tf_rest import (
    TF_DESCRIPTION,
    TfColumnarResponse,
    TfError,
    TfRowResponse,
    columns,
    tf_error,
)

SERVICE = "inference"
# Bodies up to this size are parsed on the event loop (well under a millisecond).
INLINE_PARSE_BYTES = 64 * 1024
# TensorFlow Serving's REST paths, which answer errors in its own shape.
TF_PATH_PREFIX = "/v1/models/"
T = TypeVar("T")
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def _render(error: MlcycleError, scope: Scope) -> Response:
    """The edge's refusals in the shape of the route asked: TF Serving's on its own paths,
    Google's on Perspective's."""
    if str(scope.get("path", "")).startswith(TF_PATH_PREFIX):
        return tf_error(error)
    if is_perspective_path(scope):
        return render_perspective_error(error, scope)
    return shared_error_shape(error, scope)


class _DirectRoute(APIRoute):
    """A route whose endpoint is called as is when FastAPI has nothing to solve for it.

    The predict endpoints take the request (and path parameters, all strings), read
    and validate their bodies themselves and answer a response: without declared
    dependencies, FastAPI's per-request handling would only add its cost, a
    noticeable share of a cached prediction's. A route with dependencies (API keys,
    rate limits) keeps FastAPI's handling; the schema is FastAPI's either way.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if self.dependant.dependencies:
            return super().get_route_handler()
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request=request, **request.path_params)

        return handler


def _post(app: FastAPI, path: str, **route: Any) -> Callable[[Endpoint], Endpoint]:
    """Register the decorated endpoint as a POST :class:`_DirectRoute` of the app itself.

    On the app rather than an included APIRouter: FastAPI dispatches an included
    router's routes through an extra layer, a measurable cost per request.
    """

    def register(endpoint: Endpoint) -> Endpoint:
        app.router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            tags=["predict"],
            route_class_override=_DirectRoute,
            **route,
        )
        return endpoint

    return register


def _add_predict_routes(
    app: FastAPI,
    settings: Settings,
    batcher: RequestBatcher,
    gate: CallerGate,
    scores: Recorder,
    explain: ExplainedPredictions,
) -> None:
    model_name = settings.trainer.model_name
    max_body, max_instances = settings.edge.max_body_bytes, settings.inference.predict_max_instances

    async def parse(parser: Callable[[bytes, int], T], body: bytes) -> T:
        # Small bodies parse faster than a thread hop; big ones must not stall the loop.
        if len(body) <= INLINE_PARSE_BYTES:
            return parser(body, max_instances)
        return await run_in_threadpool(parser, body, max_instances)

    @_post(
        app,
        "/v1/predict",
        response_model=PredictResponse,
        responses=error_responses(400, 401, 403, 409, 413, 422, 429, 503),
        summary="Score comments with the serving model version",
        description=(
            "Featurizes each instance with the serving model's own transform version, "
            "scores it with the model server (or the score cache) and answers one prediction "
            f"per instance, in order. At most {max_instances} instances and "
            f'{max_body} bytes per request. With `"explain": true` each prediction also '
            "carries `spans`: the words of the text as sent, with character offsets and "
            "their share of the score, from the version that scored it."
        ),
        openapi_extra={
            "requestBody": _body_schema(PredictRequest),
            **gate.access.openapi_security(),
        },
    )
    async def predict(request: Request) -> OrjsonResponse:
        # The key and rate checks run here rather than as FastAPI dependencies: solving a
        # dependency tree (HTTPBearer builds a credentials model per call) took keys-on
        # throughput of this, the hottest route, to 0.81 of keys-off at 64 clients
        # (benchmarks/serving.py); checked here it is 0.97.
        await gate.admit(request)
        parsed = await parse(parse_predict, await read_body(request, max_body))
        texts = [instance.text for instance in parsed.instances]
        metadata = [instance.metadata for instance in parsed.instances]
        ids = [instance.id for instance in parsed.instances]
        given = metadata if any(metadata) else None
        if parsed.explain:
            model, predictions = await explain(texts, given, ids, live=parsed.live)
        else:
            model, predictions = await batcher.predict(texts, given, ids, live=parsed.live)
        if parsed.live:
            scores.offer(model.name, ids, predictions)  # ids: joinable with decisions
        return OrjsonResponse({"predictions": predictions})

    @_post(
        app,
        "/v1/models/{name}:predict",
        response_model=TfRowResponse | TfColumnarResponse,
        responses={
            status: {"model": TfError, "description": description}
            for status, description in (
                (400, "Malformed or invalid input"),
                (401, "Missing or unknown API key"),
                (403, "An API key without the predict scope"),
                (404, "Unknown model name"),
                (413, "Body or instance count over the limit"),
                (429, "Rate limited"),
                (503, "Model server unavailable"),
            )
        },
        summary="TensorFlow Serving's REST predict shape",
        description=TF_DESCRIPTION,
        openapi_extra={
            "requestBody": _body_schema(TfRowRequest, TfColumnarRequest),
            **gate.access.openapi_security(),
        },
    )
    async def tf_predict(name: str, request: Request) -> OrjsonResponse:
        try:
            await gate.admit(request)
            if name != model_name:
                raise NotFound(f"Servable not found for request: Latest({name})")
            body = await read_body(request, max_body)
            texts, metadata, columnar, ids = await parse(parse_tf_predict_ids, body)
            served, predictions = await batcher.predict(texts, metadata, ids)
            scores.offer(served.name, ids, predictions)  # ids: joinable with decisions
        except MlcycleError as exc:
            return tf_error(exc)
        if columnar:
            return OrjsonResponse({"outputs": columns(predictions)})
        return OrjsonResponse({"predictions": predictions})


def _add_lineage_route(app: FastAPI, lineage: LineageReader, gate: CallerGate) -> None:
    @app.get(
        "/v1/lineage/{comment_id:path}",
        response_model=Lineage,
        responses=error_responses(401, 403, 404, 422, 429, 503),
        dependencies=gate.dependencies(),
        tags=["lineage"],
        summary="A comment's prediction chain: votes, label, transform, model, score",
        description=(
            "From the stored comment and its votes, through its label and how it was derived, "
            "the transform version and the model version (state, metrics, hyper-parameters, "
            "blessing), to its score: the one the stream stored, else one made now "
            "(`score.source`). Parts that cannot be given are null, and `missing` says why."
        ),
    )
    async def lineage_of(
        comment_id: str = Path(
            min_length=1,
            max_length=512,
            pattern=r"^[^\x00-\x1f]+$",
            description="the comment's id (no control characters)",
        ),
    ) -> OrjsonResponse:
        chain = await run_in_threadpool(lineage.explain, comment_id)
        return OrjsonResponse(chain.to_json())


def _body_schema(*models: type[BaseModel]) -> dict[str, Any]:
    refs = [{"$ref": f"#/components/schemas/{model.__name__}"} for model in models]
    schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _install_request_schemas(app: FastAPI, models: tuple[type[BaseModel], ...]) -> None:
    """Publish the request models under components/schemas, where the request bodies point."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # FastAPI's own, which caches it on the app
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _ready_checks(
    runtime: InferenceRuntime, batcher: RequestBatcher
) -> Callable[[], dict[str, bool]]:
    def checks() -> dict[str, bool]:
        ready = runtime.ready_checks()
        if ready["model_server"]:
            ready["model_server"] = batcher.model_server_reachable()
        return ready

    return checks


def create_app(
    settings: Settings, runtime: InferenceRuntime, *, keys: KeyRing | None = None
) -> FastAPI:
    """The inference service's ASGI app over ``runtime`` (the caller owns and closes it).

    ``keys`` defaults to the ones the settings configure.
    """
    access = RouteAccess(
        keys if keys is not None else key_ring(settings.edge), route_scopes(SERVICE)
    )
    batcher = RequestBatcher(runtime.predictor, max_rows=settings.inference.predict_batch_size)
    explainer = Explainer(
        runtime.client, runtime.cache, batch_rows=settings.inference.predict_batch_size
    )
    explain_batcher = ExplainBatcher(explainer, batcher.async_clients)
    lineage = LineageReader(
        served_model(settings),
        settings.labeler.task,
        runtime.predictor,
        store=settings.store,
        explainer=explainer,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        runtime.run_blocking_predictions_on(loop)
        if runtime.offpath is not None:
            runtime.offpath.score = batcher.offpath_scores_on(loop)
        yield
        if runtime.offpath is not None:  # its queued work is scored while the loop runs
            await asyncio.to_thread(runtime.offpath.stop)
        await explain_batcher.join()
        await batcher.close()
        await runtime.stop_blocking_predictions()
        lineage.close()
        if runtime.offpath is not None:
            runtime.offpath.record_scores = None  # the recorder closes now
        feedback.close()

    app = FastAPI(
        lifespan=lifespan,
        title="mlcycle inference",
        version=__version__,
        description=(
            "Real-time toxicity scores from the serving model version, cached in Redis. "
            'Errors are `{"error": {"code", "message", "details"}}`, except on the '
            "TensorFlow Serving-shaped route, which answers TF Serving's "
            '`{"error": "<message>"}`, and on Perspective\'s `comments:analyze`, which '
            'answers Google\'s `{"error": {"code", "message", "status", "details"}}`.'
        ),
    )
    install_edge(app, service=SERVICE, max_body_bytes=settings.edge.max_body_bytes, render=_render)
    app.add_exception_handler(RateLimited, rate_limited_handler)
    add_health_routes(app, _ready_checks(runtime, batcher), runtime.degraded_checks)
    gate = CallerGate(access, settings.inference)
    feedback = add_feedback_routes(app, settings, runtime, gate)
    _add_predict_routes(
        app,
        settings,
        batcher,
        gate,
        feedback.recorder,
        functools.partial(predict_and_explain, explain_batcher, batcher, runtime.tracker),
    )
    # Perspective's AnalyzeComment, over the same scoring and explain paths.
    analyze = Analyzer(batcher, explain_batcher, explainer, runtime.predictor)
    add_perspective_route(app, analyze, gate, max_body_bytes=settings.edge.max_body_bytes)
    if runtime.offpath is not None:  # the shadow's scores, joinable under its version
        runtime.offpath.record_scores = feedback.recorder.offer
    _add_lineage_route(app, lineage, gate)
    add_live_rate_route(app, runtime.tracker, gate)
    quality_of = feedback.quality_windows
    if runtime.monitor is not None:
        runtime.monitor.quality_of = quality_of  # the quality gauges
    add_monitoring_routes(app, runtime.tracker, runtime.monitor, gate, quality_of=quality_of)
    _install_request_schemas(
        app, (PredictRequest, TfRowRequest, TfColumnarRequest, AnalyzeCommentRequest)
    )
    return access.verify(app)


def serve(settings: Settings) -> None:
    """The REST API on ``settings.inference.port`` until SIGINT/SIGTERM."""
    keys = exposed_key_ring(settings.edge, settings.host, service=SERVICE)
    runtime = InferenceRuntime.open(settings, start_embedded_redis=settings.cache.embedded_redis)
    try:
        app = create_app(settings, runtime, keys=keys)
        serve_app(app, settings.host, settings.inference.port, service=SERVICE)
    finally:
        runtime.close()
