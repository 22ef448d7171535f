"""The gRPC edge every service reuses: one server builder, one error interceptor, one channel.

Every server built here registers the standard health service
(``grpc.health.v1.Health``: the overall status ``""`` and each named service
SERVING while up, NOT_SERVING once stopping), so Kubernetes gRPC probes work
against any mlcycle server, and server reflection when ``MLCYCLE_GRPC_REFLECTION=true``
(off by default: it lists every method to whoever asks).

Every server enforces the edge settings: API keys with one scope per method
(:mod:`mlcycle.common.grpc_auth`), at most ``MLCYCLE_GRPC_MAX_CONCURRENT_RPCS``
calls at once (RESOURCE_EXHAUSTED past it), messages of at most
``MLCYCLE_GRPC_MAX_MESSAGE_BYTES`` each way, and no listening beyond loopback
without keys unless ``MLCYCLE_AUTH=off``.

:class:`ErrorInterceptor` is the one place that turns a raised
:class:`~mlcycle.common.errors.MlcycleError` into a gRPC status: its code and
message, plus the REST error body as JSON in the ``mlcycle-error-bin``
trailing metadata entry. Anything else that escapes a handler is logged and
answered INTERNAL with a generic message, so no internals reach the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mlcycle.common.errors import InvalidInput, MlcycleError, Unavailable
from mlcycle.common.grpc_auth import KeyInterceptor, ScopeTable, check_table
from mlcycle.common.keys import KeyRing, check_exposure
from mlcycle.common.settings import EdgeSettings

log = logging.getLogger(__name__)

# Trailing metadata key carrying {"error": {"code", "message", "details"}} as UTF-8 JSON.
# Binary ("-bin") because details may hold any text, and text metadata must be ASCII.
ERROR_METADATA_KEY = "mlcycle-error-bin"
INTERNAL_MESSAGE = "internal error"
# What clients accept and send; servers take MLCYCLE_GRPC_MAX_MESSAGE_BYTES (the same by
# default). Measured with the default transform: a 64-row Predict (the inference batch) of
# 5,000-character texts, the most a row keeps, is 13.8 MB, of typical comments 0.4 MB; a
# 1,000-comment Featurize answer 2.5 MB. gRPC's own 4 MiB is too small for the first.
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Clients ping an idle call every minute to notice dead peers behind load balancers;
# servers accept pings that often (their default policy would answer GOAWAY to them).
CLIENT_KEEPALIVE_MS = 60_000
CLIENT_KEEPALIVE_TIMEOUT_MS = 20_000
SERVER_MIN_PING_INTERVAL_MS = 30_000
# Codes that mean the server, not the caller, is at fault: logged as warnings.
_SERVER_SIDE_CODES = frozenset(
    {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS}
)

AddServicer = Callable[[Any, grpc.Server], None]


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps MlcycleError to its gRPC status, and anything unexpected to a bare INTERNAL."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return _guard_handler(handler, handler_call_details.method)


_HANDLER_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _guard_handler(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    for kind, factory in _HANDLER_FACTORIES.items():
        behavior = getattr(handler, kind)
        if behavior is None:
            continue
        if getattr(behavior, "experimental_non_blocking", False):
            # Callback-style streams (the health Watch) take a third argument; leave them be.
            return handler
        guarded = _guard(behavior, method, streaming=kind.endswith("_stream"))
        return factory(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def _guard(behavior: Callable[..., Any], method: str, *, streaming: bool) -> Callable[..., Any]:
    if streaming:

        def guarded_stream(request: Any, context: grpc.ServicerContext) -> Iterable[Any]:
            try:
                yield from behavior(request, context)
            except Exception as exc:
                _abort(context, exc, method)

        return guarded_stream

    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as exc:
            _abort(context, exc, method)

    return guarded


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    """End the call with the status ``exc`` maps to (``context.abort`` raises)."""
    if isinstance(exc, MlcycleError):
        level = logging.WARNING if exc.grpc_code in _SERVER_SIDE_CODES else logging.INFO
        log.log(level, "%s failed: %s %s", method, exc.grpc_code.name, exc.message)
        body = orjson.dumps(exc.to_body(), default=str)  # details must never break the answer
        context.set_trailing_metadata(((ERROR_METADATA_KEY, body),))
        context.abort(exc.grpc_code, exc.message)
    elif context.code() not in (None, grpc.StatusCode.OK):
        # The handler chose a status itself: context.abort raises a bare Exception.
        # Keep its code; never let grpc fill in the exception text as details.
        if not context.details():
            context.set_details(INTERNAL_MESSAGE)
        raise exc
    else:
        log.error("%s raised an unexpected error", method, exc_info=exc)
        context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


@dataclass(frozen=True)
class _Unparseable:
    """Stands in for a request whose bytes did not parse, so the handler can refuse it."""

    reason: str


class RejectUnparseable(grpc.ServerInterceptor):
    """Turns a request that fails to deserialize into INVALID_ARGUMENT for ``services``' methods.

    gRPC answers a deserializer's exception with INTERNAL before any handler or
    interceptor runs. Wrapping the deserializer lets the failure reach the
    handler as a value, where it is raised as InvalidInput and mapped by the
    ErrorInterceptor like any other bad input. Only unary-request methods of
    ``services`` are wrapped; streaming ones keep gRPC's own handling.
    """

    def __init__(self, services: Sequence[str]) -> None:
        self._prefixes = tuple(f"/{service}/" for service in services)
        # method -> (handler seen, its wrapped twin): wrap once, not on every call. Threads
        # racing on a first call at worst both wrap; each dict write is atomic.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None or not method.startswith(self._prefixes):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = grpc.unary_unary_rpc_method_handler(
            _refusing_unparseable(handler.unary_unary, method),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        if deserialize is None:
            return data
        try:
            return deserialize(data)
        except Exception as exc:  # any parse failure is the sender's bytes, not our bug
            return _Unparseable(str(exc) or type(exc).__name__)

    return parse


def _refusing_unparseable(
    behavior: Callable[[Any, grpc.ServicerContext], Any], method: str
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Unparseable):
            hint = " (string fields must hold valid UTF-8)" if "UTF-8" in request.reason else ""
            raise InvalidInput(
                f"the {method} request could not be parsed: {request.reason}{hint}",
                details={"method": method, "reason": request.reason},
            )
        return behavior(request, context)

    return handle


class GrpcServer:
    """A bound, not yet started gRPC server with health and reflection (see build_server)."""

    def __init__(
        self,
        server: grpc.Server,
        health_servicer: health.HealthServicer,
        *,
        host: str,
        port: int,
        service_names: Sequence[str],
    ) -> None:
        self._server = server
        self.health = health_servicer
        self.host = host
        self.port = port
        self.service_names = tuple(service_names)

    @property
    def address(self) -> str:
        """``host:port`` to dial, with the bound port."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> GrpcServer:
        """Start serving; every registered service is reported SERVING."""
        for name in ("", *self.service_names):
            self.set_serving(name, True)
        self._server.start()
        log.info("gRPC server listening on %s", self.address)
        return self

    def set_serving(self, service: str, serving: bool) -> None:
        """Report ``service`` (``""`` for the whole server) SERVING or NOT_SERVING."""
        status = health_pb2.HealthCheckResponse.SERVING
        if not serving:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set(service, status)

    def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new calls, give running ones ``grace`` seconds."""
        self.health.enter_graceful_shutdown()
        self._server.stop(grace).wait()
        log.info("gRPC server on %s stopped", self.address)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (True) or ``timeout`` seconds pass (False)."""
        return self._server.wait_for_termination(timeout)

    def __enter__(self) -> GrpcServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop(grace=None)


def build_server(
    *,
    port: int,
    host: str = "127.0.0.1",
    servicers: Sequence[tuple[AddServicer, object]] = (),
    service_names: Sequence[str] = (),
    method_scopes: ScopeTable,
    edge: EdgeSettings | None = None,
    max_workers: int = 8,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> GrpcServer:
    """A gRPC server with ``servicers`` and health, bound but not started.

    ``servicers`` pairs each generated ``add_XServicer_to_server`` with its
    servicer; ``service_names`` are their full names (``mlcycle.v1.CollectorService``),
    reported in health and listed by reflection. ``method_scopes`` is the scope each
    of their methods needs (every method must be there), ``edge`` the keys and limits
    (the defaults, no keys, when None). ``port=0`` binds a free port, readable
    afterwards as ``.port``. :class:`ErrorInterceptor` runs outermost, so errors
    raised by the handlers that ``interceptors`` return are mapped too.

    Raises Unavailable when the address cannot be bound, KeyConfigError when the keys
    cannot be read or ``host`` is beyond loopback with no keys (and auth is not off).
    """
    edge = edge if edge is not None else EdgeSettings()
    check_table(service_names, method_scopes)
    ring = KeyRing.from_settings(edge.api_keys, edge.api_keys_file)
    check_exposure(host, ring, auth=edge.auth, service=", ".join(service_names) or "gRPC server")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=(
            ErrorInterceptor(),
            RejectUnparseable(service_names),
            KeyInterceptor(ring, method_scopes),
            *interceptors,
        ),
        options=_server_options(edge.grpc_max_message_bytes),
        # Past this many calls in flight or queued for a worker, gRPC answers RESOURCE_EXHAUSTED.
        maximum_concurrent_rpcs=edge.grpc_max_concurrent_rpcs,
    )
    for add_servicer, servicer in servicers:
        add_servicer(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if edge.grpc_reflection:
        reflection.enable_server_reflection(
            (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    bound = _bind(server, host, port)
    return GrpcServer(server, health_servicer, host=host, port=bound, service_names=service_names)


def channel(
    target: str,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """An insecure client channel to ``target`` with mlcycle's keepalive and size limits.

    ``options`` are appended and win over the defaults.
    """
    defaults = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", CLIENT_KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", CLIENT_KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 0),
    ]
    return grpc.insecure_channel(target, options=_merge(defaults, options))


def _server_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.http2.min_ping_interval_without_data_ms", SERVER_MIN_PING_INTERVAL_MS),
        # Without this, Linux lets a second server bind the same port and silently share it.
        ("grpc.so_reuseport", 0),
    ]


def _merge(
    defaults: Sequence[tuple[str, Any]], overrides: Sequence[tuple[str, Any]]
) -> list[tuple[str, Any]]:
    merged = dict(defaults)
    merged.update(overrides)
    return list(merged.items())


def _bind(server: grpc.Server, host: str, port: int) -> int:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise Unavailable(
            f"cannot listen on {address}: the address is in use or not local",
            details={"address": address},
        )
    return bound
