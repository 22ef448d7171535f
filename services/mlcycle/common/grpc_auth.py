"""API keys on every gRPC server: ``authorization: Bearer <key>`` metadata, one scope per method.

Each server gives :func:`mlcycle.common.grpc.build_server` one explicit table from
full method name (``/tensorflow.serving.PredictionService/Predict``) to the
:class:`~mlcycle.common.keys.Scope` the call needs, and :class:`KeyInterceptor`
enforces it with the same :class:`~mlcycle.common.keys.KeyRing` as the HTTP edge:

- health and reflection stay open, so probes and ``grpcurl list`` work;
- with no key configured every call passes untouched: the model server is then
  exactly TF Serving's open API, and stock clients work unchanged;
- otherwise a call without a key, or with an unknown one, is UNAUTHENTICATED; a key
  without the scope is PERMISSION_DENIED naming the scope; and a method missing from
  the table is PERMISSION_DENIED whatever the key (fail closed). The refusal comes
  before the request is parsed.

A :class:`MethodRule` may ask more of some requests once parsed (a featurizer ``Fit``
that makes its transform the current one needs ``admin``). Handlers read who is
calling with :func:`current_caller`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool

from mlcycle.common.errors import Forbidden, MlcycleError, Unauthenticated
from mlcycle.common.keys import OPEN_CALLER, Caller, KeyRing, Scope, digest_of

AUTHORIZATION = "authorization"
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = (
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)
OPEN_SERVICES = frozenset({HEALTH_SERVICE, *REFLECTION_SERVICES})

_caller: ContextVar[Caller] = ContextVar("grpc_caller", default=OPEN_CALLER)


@dataclass(frozen=True)
class MethodRule:
    """The scope every call of a method needs, and what a particular request needs beyond it."""

    scope: Scope
    # Given the parsed request: a further scope it needs, or None.
    stricter: Callable[[Any], Scope | None] | None = None


ScopeTable = Mapping[str, Scope | MethodRule]


def method_name(service: str, method: str) -> str:
    """The full name gRPC routes by: ``/<package.Service>/<Method>``."""
    return f"/{service}/{method}"


def bearer_metadata(secret: str) -> tuple[tuple[str, str], ...]:
    """The call metadata presenting ``secret`` (none for an empty secret: keys are off)."""
    return ((AUTHORIZATION, f"Bearer {secret}"),) if secret else ()


def presented_key(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The secret of an ``authorization: Bearer <secret>`` entry, if there is one."""
    for key, value in metadata or ():
        if key == AUTHORIZATION and isinstance(value, str):
            scheme, _, secret = value.strip().partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
            return None
    return None


def current_caller() -> Caller:
    """Who makes the call being handled (``anonymous`` with every scope when keys are off)."""
    return _caller.get()


def service_methods(service_names: Sequence[str]) -> list[str]:
    """Every method of ``service_names``, by full name, from their proto descriptors."""
    pool = descriptor_pool.Default()
    methods: list[str] = []
    for service in service_names:
        try:
            descriptor = pool.FindServiceByName(service)
        except KeyError:
            raise ValueError(
                f"no proto descriptor for service {service}: import its _pb2"
            ) from None
        methods += [method_name(service, m.name) for m in descriptor.methods]
    return methods


def check_table(service_names: Sequence[str], table: ScopeTable) -> None:
    """Refuse to build a server whose table leaves a method of its services without a scope."""
    missing = [m for m in service_methods(service_names) if m not in table]
    if missing:
        raise ValueError(f"no scope for {', '.join(missing)}: add each to the server's table")


def _allows(caller: Caller, scope: Scope) -> bool:
    return Scope.ADMIN in caller.scopes or scope in caller.scopes


_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _kind(handler: grpc.RpcMethodHandler | None) -> str:
    if handler is None:
        return "unary_unary"
    return next((kind for kind in _FACTORIES if getattr(handler, kind) is not None), "unary_unary")


def _refusing(handler: grpc.RpcMethodHandler | None, error: MlcycleError) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind that raises ``error`` without parsing the request."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        raise error

    serializer = handler.response_serializer if handler is not None else None
    return _FACTORIES[_kind(handler)](refuse, response_serializer=serializer)


def _as_caller(
    handler: grpc.RpcMethodHandler, caller: Caller, rule: MethodRule
) -> grpc.RpcMethodHandler:
    """``handler`` run with ``caller`` as :func:`current_caller`, after ``rule.stricter``."""
    kind = _kind(handler)
    behavior = getattr(handler, kind)

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        if rule.stricter is not None:
            needed = rule.stricter(request)
            if needed is not None and not _allows(caller, needed):
                raise Forbidden(
                    f"API key {caller.name!r} lacks the {needed.value!r} scope this call needs",
                    details={"key": caller.name, "required_scope": needed.value},
                )
        token = _caller.set(caller)
        try:
            return behavior(request, context)
        finally:
            _caller.reset(token)

    return _FACTORIES[kind](
        run,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class KeyInterceptor(grpc.ServerInterceptor):
    """Authorizes each call of a server by its method's scope (see the module docstring)."""

    def __init__(self, ring: KeyRing, table: ScopeTable) -> None:
        self.ring = ring
        self.rules = {
            method: rule if isinstance(rule, MethodRule) else MethodRule(rule)
            for method, rule in table.items()
        }
        # (method, digest of an accepted secret) -> (handler seen, the handler run as its
        # key). A key's next call of the method is one hash and one lookup, not the whole
        # authorization again: that runs on the thread that polls gRPC's completion queue,
        # which every call waits for. The keys never change while the server runs, and only
        # accepted digests are kept (at most methods x keys). Looking a digest up tells
        # nothing about the configured secrets: a caller cannot choose a digest's bytes.
        self._granted: dict[
            tuple[str, bytes], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]
        ] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        handler = continuation(handler_call_details)
        if self.ring.open or method[1:].partition("/")[0] in OPEN_SERVICES:
            return handler
        presented = presented_key(handler_call_details.invocation_metadata)
        granted = (method, digest_of(presented)) if presented else None
        cached = self._granted.get(granted) if granted else None
        if cached is not None and cached[0] is handler:
            return cached[1]
        rule = self.rules.get(method)
        try:
            if rule is None or handler is None:
                raise self._unlisted(presented, method)
            caller = self.ring.authorize(presented, rule.scope)
        except MlcycleError as refusal:
            return _refusing(handler, refusal)
        wrapped = _as_caller(handler, caller, rule)
        if granted is not None:
            self._granted[granted] = (handler, wrapped)
        return wrapped

    def _unlisted(self, presented: str | None, method: str) -> MlcycleError:
        """Why a method no rule names is refused: no valid key, or no key may call it."""
        if not presented or self.ring.identify(presented) is None:
            return Unauthenticated("missing or invalid API key: send 'authorization: Bearer <key>'")
        return Forbidden(
            f"{method} is not open to any API key on this server",
            details={"method": method},
        )
