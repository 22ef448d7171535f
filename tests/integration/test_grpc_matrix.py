"""The gRPC authorization matrix: every method every server exposes, with every kind of key.

The methods come from the live servers themselves (reflection lists their services,
and the descriptors they serve list the methods), so a method added to a proto is
in the matrix the day it is served; the expected scopes are written here, from
the issue, so a method nobody gave a scope fails this test as well as the server's
own start-up check. Each method is called with no key, an unknown key and a key of
each single scope, and the answer's code is compared with the expectation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from mlcycle.common.grpc import GrpcServer, channel
from mlcycle.common.grpc_auth import OPEN_SERVICES
from mlcycle.common.keys import Scope
from mlcycle.common.settings import Settings, load_settings
from mlcycle.common.store import open_store
from mlcycle.featurizer.grpc_api import build_grpc_server
from mlcycle.featurizer.service import core_for
from mlcycle.protos.mlcycle.v1 import featurizer_pb2

pytestmark = pytest.mark.integration

KEYS = {scope: f"{scope.value}-secret" for scope in Scope}
API_KEYS = tuple(f"{scope.value}-key:{scope.value}:{secret}" for scope, secret in KEYS.items())
DENIED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)

# The scopes a call needs, as the issue states them: (method, request variant) -> scopes,
# every one of which the key must hold. The empty request is every method's variant.
EXPECTED: dict[tuple[str, str], tuple[Scope, ...]] = {
    ("/tensorflow.serving.PredictionService/Predict", "empty"): (Scope.PREDICT,),
    ("/tensorflow.serving.PredictionService/Classify", "empty"): (Scope.PREDICT,),
    ("/tensorflow.serving.PredictionService/Regress", "empty"): (Scope.PREDICT,),
    ("/tensorflow.serving.PredictionService/MultiInference", "empty"): (Scope.PREDICT,),
    ("/tensorflow.serving.PredictionService/GetModelMetadata", "empty"): (Scope.PREDICT,),
    ("/tensorflow.serving.ModelService/GetModelStatus", "empty"): (Scope.PREDICT,),
    ("/tensorflow.serving.ModelService/HandleReloadConfigRequest", "empty"): (Scope.ADMIN,),
    # Fit stores a transform (train) and, unless told not to, makes it current (admin).
    ("/mlcycle.v1.FeaturizerService/Fit", "empty"): (Scope.TRAIN, Scope.ADMIN),
    ("/mlcycle.v1.FeaturizerService/Fit", "make_current=false"): (Scope.TRAIN,),
    ("/mlcycle.v1.FeaturizerService/Featurize", "empty"): (Scope.PREDICT,),
    ("/mlcycle.v1.FeaturizerService/GetTransform", "empty"): (Scope.READ,),
}
VARIANTS = {
    "empty": b"",
    "make_current=false": featurizer_pb2.FitRequest(make_current=False).SerializeToString(),
}


@dataclass(frozen=True)
class Cell:
    method: str
    variant: str
    presented: str  # "no key", "wrong key" or a scope
    expected: str  # "UNAUTHENTICATED", "PERMISSION_DENIED" or "passes"
    got: str
    details: str


def settings_with_keys(data_dir: Path) -> Settings:
    return load_settings(
        data_dir=data_dir,
        host="127.0.0.1",
        log_level="WARNING",
        api_keys=API_KEYS,
        grpc_reflection=True,
        featurizer_grpc_port=0,
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GrpcServer | int]]:
    from mlcycle.modelserver import ModelServer, ModelServerOptions

    data = tmp_path_factory.mktemp("matrix")
    settings = settings_with_keys(data)
    store = open_store(settings.store)
    featurizer = build_grpc_server(
        settings.featurizer, core_for(settings, store), host=settings.host, edge=settings.edge
    ).start()
    options = ModelServerOptions(
        host="127.0.0.1", port=0, rest_api_port=None, model_base_path=str(data / "models" / "m")
    )
    model_server = ModelServer(
        options, settings.modelserver, models_dir=settings.trainer.models_dir, edge=settings.edge
    ).start(timeout_s=10)
    try:
        yield {"featurizer": featurizer, "modelserver": model_server.grpc_port}
    finally:
        model_server.stop(grace_s=0)
        featurizer.stop(grace=None)
        store.close()


def served_methods(chan: grpc.Channel) -> list[str]:
    """Every method of every service the server lists by reflection, but health's and its own."""
    database = ProtoReflectionDescriptorDatabase(chan)
    pool = descriptor_pool.DescriptorPool(database)
    methods = []
    for service in database.get_services():
        if service in OPEN_SERVICES:
            continue
        for method in pool.FindServiceByName(service).methods:
            methods.append(f"/{service}/{method.name}")
    return methods


def expected_code(needed: tuple[Scope, ...], presented: str) -> str:
    if presented in ("no key", "wrong key"):
        return "UNAUTHENTICATED"
    scope = Scope(presented)
    allowed = scope is Scope.ADMIN or all(s == scope for s in needed)
    return "passes" if allowed else "PERMISSION_DENIED"


def call(chan: grpc.Channel, method: str, body: bytes, presented: str) -> tuple[str, str]:
    metadata = ()
    if presented == "wrong key":
        metadata = (("authorization", "Bearer not-a-configured-key"),)
    elif presented != "no key":
        metadata = (("authorization", f"Bearer {KEYS[Scope(presented)]}"),)
    rpc = chan.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        rpc(body, metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        code = exc.code()
        return (code.name if code in DENIED else f"passes ({code.name})"), exc.details() or ""
    return "passes (OK)", ""


def test_every_method_answers_each_key_as_its_scope_says(
    servers: dict[str, GrpcServer | int],
) -> None:
    featurizer = servers["featurizer"]
    assert isinstance(featurizer, GrpcServer)
    addresses = [featurizer.address, f"127.0.0.1:{servers['modelserver']}"]
    presented_kinds = ["no key", "wrong key", *(scope.value for scope in Scope)]
    cells: list[Cell] = []
    served: set[str] = set()
    for address in addresses:
        with channel(address) as chan:
            methods = served_methods(chan)
            served.update(methods)
            for method in methods:
                variants = [v for (m, v) in EXPECTED if m == method] or ["empty"]
                for variant in variants:
                    needed = EXPECTED.get((method, variant))
                    for presented in presented_kinds:
                        expected = (
                            "no scope expected"
                            if needed is None
                            else (expected_code(needed, presented))
                        )
                        got, details = call(chan, method, VARIANTS[variant], presented)
                        cells.append(Cell(method, variant, presented, expected, got, details))
    mismatches = [c for c in cells if not c.got.startswith(c.expected)]
    # A passing call gets as far as the handler: an empty request is bad input or not
    # found there, never a server error.
    server_errors = [c for c in cells if c.got in ("passes (INTERNAL)", "passes (UNKNOWN)")]
    print(
        f"gRPC authorization matrix: {len(cells)} calls "
        f"({len(served)} methods x {len(presented_kinds)} keys, with request variants), "
        f"{len(mismatches)} mismatches"
    )
    assert served == {method for method, _ in EXPECTED}, "a served method has no expectation"
    assert mismatches == [], "\n".join(
        f"{c.method} [{c.variant}] with {c.presented}: expected {c.expected}, got {c.got}"
        for c in mismatches
    )
    assert server_errors == []
    # A refusal for a key of the wrong scope names the scope the call needs.
    for cell in cells:
        if cell.got == "PERMISSION_DENIED":
            needed = EXPECTED[(cell.method, cell.variant)]
            missing = [s for s in needed if s.value != cell.presented]
            assert f"'{missing[0].value}' scope" in cell.details, cell
