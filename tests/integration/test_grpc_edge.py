"""What every gRPC server enforces, over real loopback calls: keys, limits, reflection, exposure.

The shared builder is exercised with a small collector servicer whose calls can be held
open; the model server shows the real servers take the same settings.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from mlcycle.common.grpc import GrpcServer, build_server, channel
from mlcycle.common.grpc_auth import current_caller, method_name
from mlcycle.common.keys import KeyConfigError, Scope
from mlcycle.common.settings import EdgeSettings, load_settings
from mlcycle.protos.mlcycle.v1 import collector_pb2, collector_pb2_grpc

pytestmark = pytest.mark.integration

SERVICE = collector_pb2.DESCRIPTOR.services_by_name["CollectorService"].full_name
SCOPES = {
    method_name(SERVICE, "IngestComments"): Scope.INGEST,
    method_name(SERVICE, "IngestVotes"): Scope.INGEST,
    method_name(SERVICE, "GetComment"): Scope.READ,
}
KEYS = ("reader:read:r-secret", "other-reader:read+label:o-secret", "writer:ingest:w-secret")


def bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


class HoldingCollector(collector_pb2_grpc.CollectorServiceServicer):
    """GetComment answers with the caller's name; id "hold" waits until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.holding = threading.Semaphore(0)

    def GetComment(self, request, context):  # noqa: N802 - the gRPC method's name
        if request.id == "hold":
            self.holding.release()
            self.release.wait(10)
        return collector_pb2.Comment(id=request.id, text=current_caller().name)


def start(edge: EdgeSettings, servicer: object | None = None, **kwargs: object) -> GrpcServer:
    return build_server(
        port=0,
        servicers=[
            (
                collector_pb2_grpc.add_CollectorServiceServicer_to_server,
                servicer or HoldingCollector(),
            )
        ],
        service_names=[SERVICE],
        method_scopes=SCOPES,
        edge=edge,
        **kwargs,
    ).start()


@pytest.fixture
def keyed() -> Iterator[tuple[GrpcServer, HoldingCollector]]:
    servicer = HoldingCollector()
    server = start(EdgeSettings(api_keys=KEYS), servicer)
    yield server, servicer
    servicer.release.set()
    server.stop(grace=None)


def code_of(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=5, **kwargs)
    return caught.value.code()


def test_the_handler_knows_which_key_called(keyed) -> None:
    server, _ = keyed
    with channel(server.address) as chan:
        get = collector_pb2_grpc.CollectorServiceStub(chan).GetComment
        request = collector_pb2.GetCommentRequest(id="c1")
        # Alternating keys: each call is its own caller, never the previous one's.
        for secret, name in [("r-secret", "reader"), ("o-secret", "other-reader")] * 2:
            assert get(request, metadata=bearer(secret), timeout=5).text == name
        assert code_of(get, request, metadata=bearer("w-secret")) == (
            grpc.StatusCode.PERMISSION_DENIED
        )


def test_a_method_without_a_rule_is_refused_whatever_the_key(keyed) -> None:
    server, _ = keyed
    with channel(server.address) as chan:
        unknown = chan.unary_unary(f"/{SERVICE}/DeleteEverything")
        assert code_of(unknown, b"") == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(unknown, b"", metadata=bearer("nope")) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(unknown, b"", metadata=bearer("r-secret")) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
    # Without keys nothing is hidden: gRPC's own answer for a method it does not have.
    open_server = start(EdgeSettings())
    try:
        with channel(open_server.address) as chan:
            unknown = chan.unary_unary(f"/{SERVICE}/DeleteEverything")
            assert code_of(unknown, b"") == grpc.StatusCode.UNIMPLEMENTED
    finally:
        open_server.stop(grace=None)


def test_a_server_whose_table_misses_a_method_does_not_build() -> None:
    partial = {m: s for m, s in SCOPES.items() if not m.endswith("/IngestVotes")}
    with pytest.raises(ValueError, match="IngestVotes"):
        build_server(
            port=0,
            servicers=[
                (collector_pb2_grpc.add_CollectorServiceServicer_to_server, HoldingCollector())
            ],
            service_names=[SERVICE],
            method_scopes=partial,
        )


def test_calls_past_the_concurrency_bound_are_resource_exhausted() -> None:
    servicer = HoldingCollector()
    server = start(EdgeSettings(grpc_max_concurrent_rpcs=2), servicer, max_workers=4)
    try:
        with channel(server.address) as chan:
            get = collector_pb2_grpc.CollectorServiceStub(chan).GetComment
            held = [get.future(collector_pb2.GetCommentRequest(id="hold"), timeout=10)]
            held.append(get.future(collector_pb2.GetCommentRequest(id="hold"), timeout=10))
            for _ in held:
                assert servicer.holding.acquire(timeout=5), "the held calls never started"
            request = collector_pb2.GetCommentRequest(id="c1")
            assert code_of(get, request) == grpc.StatusCode.RESOURCE_EXHAUSTED
            servicer.release.set()
            assert [f.result().id for f in held] == ["hold", "hold"]
            assert get(request, timeout=5).id == "c1"  # below the bound again
    finally:
        servicer.release.set()
        server.stop(grace=None)


def test_messages_over_the_size_limit_are_resource_exhausted() -> None:
    server = start(EdgeSettings(grpc_max_message_bytes=1024))
    try:
        with channel(server.address) as chan:
            get = collector_pb2_grpc.CollectorServiceStub(chan).GetComment
            assert get(collector_pb2.GetCommentRequest(id="x" * 900), timeout=5).id
            big = collector_pb2.GetCommentRequest(id="x" * 2000)
            assert code_of(get, big) == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(grace=None)


def listed_services(address: str) -> set[str] | grpc.StatusCode:
    with channel(address) as chan:
        try:
            return set(ProtoReflectionDescriptorDatabase(chan).get_services())
        except grpc.RpcError as exc:
            return exc.code()


def test_the_model_server_has_reflection_only_when_asked(tmp_path) -> None:
    from mlcycle.modelserver import ModelServer, ModelServerOptions

    options = ModelServerOptions(host="127.0.0.1", port=0, rest_api_port=None)
    for flag, expected in [
        (None, grpc.StatusCode.UNIMPLEMENTED),
        (True, {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"}),
    ]:
        overrides = {} if flag is None else {"grpc_reflection": flag}
        settings = load_settings(data_dir=tmp_path, log_level="WARNING", **overrides)
        server = ModelServer(
            options, settings.modelserver, models_dir=tmp_path / "models", edge=settings.edge
        ).start(wait_for_models=False)
        try:
            listed = listed_services(f"127.0.0.1:{server.grpc_port}")
        finally:
            server.stop(grace_s=0)
        if isinstance(expected, set):
            assert isinstance(listed, set) and expected <= listed
        else:
            assert listed == expected


def test_no_keys_beyond_loopback_refuses_to_start_unless_auth_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(KeyConfigError, match="0.0.0.0 with no API keys"):
        start(EdgeSettings(), host="0.0.0.0")
    for edge in (EdgeSettings(auth="off"), EdgeSettings(api_keys=KEYS)):
        with caplog.at_level("WARNING", logger="mlcycle.common.keys"):
            server = start(edge, host="0.0.0.0")
        server.stop(grace=None)
    assert any("MLCYCLE_AUTH=off" in r.getMessage() for r in caplog.records)
