"""The shared gRPC server over real loopback calls: health, reflection, error mapping, shutdown."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from mlcycle.common.errors import InvalidInput, NotFound, Unauthenticated, Unavailable
from mlcycle.common.grpc import (
    ERROR_METADATA_KEY,
    INTERNAL_MESSAGE,
    GrpcServer,
    build_server,
    channel,
)
from mlcycle.common.grpc_auth import method_name
from mlcycle.common.keys import Scope
from mlcycle.common.settings import EdgeSettings
from mlcycle.protos.mlcycle.v1 import collector_pb2, collector_pb2_grpc

pytestmark = pytest.mark.integration

SERVICE = collector_pb2.DESCRIPTOR.services_by_name["CollectorService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SECRET = "password=hunter2 at /srv/db"
SCOPES = {
    method_name(SERVICE, "IngestComments"): Scope.INGEST,
    method_name(SERVICE, "IngestVotes"): Scope.INGEST,
    method_name(SERVICE, "GetComment"): Scope.READ,
}


class FakeCollector(collector_pb2_grpc.CollectorServiceServicer):
    """Knows one comment; rejects empty batches; has a bug in IngestVotes."""

    def GetComment(self, request, context):
        if request.id == "forbidden":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
        if request.id == "odd-details":
            raise NotFound("gone", details={"ids": {"x"}})
        if request.id != "c1":
            raise NotFound(f"no comment with id {request.id!r}", details={"id": request.id})
        comment = collector_pb2.Comment(id="c1", text="héllo")
        comment.metadata.update({"year": 2015, "logged_in": True})
        return comment

    def IngestComments(self, request, context):
        if not request.comments:
            raise InvalidInput("the batch is empty: send at least one record")
        return collector_pb2.IngestResponse(accepted=len(request.comments))

    def IngestVotes(self, request, context):
        raise RuntimeError(SECRET)


@pytest.fixture
def server() -> Iterator[GrpcServer]:
    built = build_server(
        port=0,
        servicers=[(collector_pb2_grpc.add_CollectorServiceServicer_to_server, FakeCollector())],
        service_names=[SERVICE],
        method_scopes=SCOPES,
        edge=EdgeSettings(grpc_reflection=True),
    )
    built.start()
    yield built
    built.stop(grace=None)


class RequireKey(grpc.ServerInterceptor):
    """An auth-style interceptor: calls without an ``x-api-key`` get a handler that refuses."""

    def intercept_service(self, continuation, handler_call_details):
        if ("x-api-key", "k") in (handler_call_details.invocation_metadata or ()):
            return continuation(handler_call_details)

        def refuse(request, context):
            raise Unauthenticated("missing API key")

        return grpc.unary_unary_rpc_method_handler(refuse)


@pytest.fixture
def chan(server: GrpcServer) -> Iterator[grpc.Channel]:
    with channel(server.address) as ch:
        yield ch


def test_port_zero_binds_a_real_port(server: GrpcServer) -> None:
    assert server.port > 0
    assert server.address == f"127.0.0.1:{server.port}"


def test_health_reports_serving_for_server_and_service(chan: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(chan)
    for name in ("", SERVICE):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == SERVING, name
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_services_under_their_proto_file(chan: grpc.Channel) -> None:
    db = ProtoReflectionDescriptorDatabase(chan)
    services = set(db.get_services())
    assert {SERVICE, "grpc.health.v1.Health"} <= services
    # The descriptor keeps its canonical path, not the Python package it was generated into.
    assert db.FindFileContainingSymbol(SERVICE).name == "mlcycle/v1/collector.proto"


def test_a_handler_answers_normally(chan: grpc.Channel) -> None:
    stub = collector_pb2_grpc.CollectorServiceStub(chan)
    comment = stub.GetComment(collector_pb2.GetCommentRequest(id="c1"), timeout=5)
    assert comment.text == "héllo"
    assert comment.metadata["year"] == 2015
    batch = collector_pb2.IngestCommentsRequest(comments=[comment, comment])
    assert stub.IngestComments(batch, timeout=5).accepted == 2


@pytest.mark.parametrize(
    ("call", "request_", "code", "error_code"),
    [
        (
            "GetComment",
            collector_pb2.GetCommentRequest(id="missing"),
            grpc.StatusCode.NOT_FOUND,
            "not_found",
        ),
        (
            "IngestComments",
            collector_pb2.IngestCommentsRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_input",
        ),
    ],
)
def test_mlcycle_errors_map_to_their_status(
    chan: grpc.Channel, call: str, request_: object, code: grpc.StatusCode, error_code: str
) -> None:
    stub = collector_pb2_grpc.CollectorServiceStub(chan)
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, call)(request_, timeout=5)
    err = caught.value
    assert err.code() == code
    trailing = dict(err.trailing_metadata())
    body = orjson.loads(trailing[ERROR_METADATA_KEY])["error"]
    assert body["code"] == error_code
    assert err.details() == body["message"]
    if call == "GetComment":
        assert err.details() == "no comment with id 'missing'"
        assert body["details"] == {"id": "missing"}


def test_unexpected_exception_is_internal_without_internals(
    chan: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    stub = collector_pb2_grpc.CollectorServiceStub(chan)
    with caplog.at_level("ERROR", logger="mlcycle.common.grpc"):
        with pytest.raises(grpc.RpcError) as caught:
            stub.IngestVotes(collector_pb2.IngestVotesRequest(), timeout=5)
    err = caught.value
    assert err.code() == grpc.StatusCode.INTERNAL
    assert err.details() == INTERNAL_MESSAGE
    assert SECRET not in repr(err.trailing_metadata())
    # The server keeps the cause for its operators.
    assert any(SECRET in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_stop_flips_health_to_not_serving(server: GrpcServer, chan: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(chan)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
    assert next(watch).status == SERVING
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 2})
    stopper.start()
    try:
        assert next(watch).status == NOT_SERVING
    finally:
        stopper.join(timeout=10)
    status = server.health.Check(health_pb2.HealthCheckRequest(service=""), None).status
    assert status == NOT_SERVING
    # Once stopped, set_serving cannot bring it back.
    server.set_serving("", True)
    assert (
        server.health.Check(health_pb2.HealthCheckRequest(service=""), None).status == NOT_SERVING
    )


def test_a_taken_port_is_a_clear_error(server: GrpcServer) -> None:
    with pytest.raises(Unavailable, match=str(server.port)):
        build_server(port=server.port, method_scopes={})


def test_errors_from_other_interceptors_handlers_are_mapped() -> None:
    guarded = build_server(
        port=0,
        servicers=[(collector_pb2_grpc.add_CollectorServiceServicer_to_server, FakeCollector())],
        service_names=[SERVICE],
        method_scopes=SCOPES,
        interceptors=[RequireKey()],
    ).start()
    try:
        with channel(guarded.address) as ch:
            stub = collector_pb2_grpc.CollectorServiceStub(ch)
            request = collector_pb2.GetCommentRequest(id="c1")
            with pytest.raises(grpc.RpcError) as caught:
                stub.GetComment(request, timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert caught.value.details() == "missing API key"
            reply = stub.GetComment(request, metadata=[("x-api-key", "k")], timeout=5)
            assert reply.id == "c1"
    finally:
        guarded.stop(grace=None)


def test_a_handlers_own_abort_passes_through(chan: grpc.Channel) -> None:
    stub = collector_pb2_grpc.CollectorServiceStub(chan)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetComment(collector_pb2.GetCommentRequest(id="forbidden"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "not yours"


def test_details_that_are_not_json_still_give_the_status(chan: grpc.Channel) -> None:
    stub = collector_pb2_grpc.CollectorServiceStub(chan)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetComment(collector_pb2.GetCommentRequest(id="odd-details"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    body = orjson.loads(dict(caught.value.trailing_metadata())[ERROR_METADATA_KEY])
    assert body["error"]["details"] == {"ids": "{'x'}"}


def test_every_service_answers_unparseable_bytes_with_invalid_argument(
    chan: grpc.Channel,
) -> None:
    """A non-Python client's invalid UTF-8 in a string field is bad input, not INTERNAL."""
    call = chan.unary_unary(
        f"/{SERVICE}/GetComment",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(b"\x0a\x02\xff\xfe", timeout=5)  # field 1 (id), 2 bytes that are not UTF-8
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in caught.value.details()
