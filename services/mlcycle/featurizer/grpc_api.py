"""The featurizer's gRPC API (50053): Fit, Featurize and GetTransform over FeaturizerCore.

Thin like the REST API next to it: requests become the core's plain Python
arguments, its results become messages, and its errors (InvalidInput,
NotFound, PayloadTooLarge) become INVALID_ARGUMENT, NOT_FOUND and
RESOURCE_EXHAUSTED through the shared interceptor of :mod:`mlcycle.common.grpc`.

``google.protobuf.Struct`` holds every number as a double. Metadata and
config values that are whole numbers are handed on as ``int`` (``2015.0``
becomes ``2015``), which is what a JSON client's ``2015`` gives over REST, so
both edges hand the transform the same values; other numbers stay ``float``.

With API keys configured each method needs its scope (:data:`METHOD_SCOPES`):
``Featurize`` is what predictions use (``predict``), ``GetTransform`` reads a stored
description (``read``), ``Fit`` stores a new transform (``train``), and making it the
current one, which ``Fit`` does unless ``make_current`` is false, changes what every
caller's vectors are (``admin``, as for the REST API's current transform).

A request that does not even parse (a string field holding invalid UTF-8, as
a non-Python client can send, or truncated bytes) is answered
INVALID_ARGUMENT saying so; gRPC itself would answer INTERNAL, blaming the
server for the client's bytes.
"""

from __future__ import annotations

import random
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import grpc
import orjson
from google.protobuf import struct_pb2
from pydantic import ValidationError

from mlcycle.common.errors import InvalidInput, Unavailable, ValidationFailed
from mlcycle.common.grpc import GrpcServer, build_server, channel
from mlcycle.common.grpc_auth import MethodRule, bearer_metadata, method_name
from mlcycle.common.keys import Scope
from mlcycle.common.settings import EdgeSettings, FeaturizerSettings, load_settings
from mlcycle.contracts.comments import MAX_TEXT_CHARS
from mlcycle.contracts.messages import flat_errors
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurizer.service import FeaturizerCore, core_for
from mlcycle.protos.mlcycle.v1 import featurizer_pb2, featurizer_pb2_grpc

SERVICE_NAME = featurizer_pb2.DESCRIPTOR.services_by_name["FeaturizerService"].full_name


def _making_current(request: featurizer_pb2.FitRequest) -> Scope | None:
    """``admin`` for a Fit that makes its transform the current one (the default)."""
    makes_current = not request.HasField("make_current") or request.make_current
    return Scope.ADMIN if makes_current else None


# What each call needs when keys are configured; a method missing here is refused.
METHOD_SCOPES = {
    method_name(SERVICE_NAME, "Fit"): MethodRule(Scope.TRAIN, stricter=_making_current),
    method_name(SERVICE_NAME, "Featurize"): Scope.PREDICT,
    method_name(SERVICE_NAME, "GetTransform"): Scope.READ,
}
# Doubles represent every integer up to 2**53 exactly; beyond it a "whole" double
# is already rounded, so it stays a float rather than pretend to be exact.
_MAX_EXACT_INT = 2**53


# -- Struct to plain Python ------------------------------------------------------------------


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a plain dict; whole numbers become ints, null becomes None."""
    return {key: _plain(value) for key, value in struct.fields.items()}


def _plain(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and abs(number) <= _MAX_EXACT_INT:
            return int(number)
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    return None  # null_value, or a Value with nothing set


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so numpy scalars, tuples and odd keys fit a Struct."""
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    return orjson.loads(orjson.dumps(value, option=option, default=str))


# -- unparseable requests --------------------------------------------------------------------


# -- the servicer ----------------------------------------------------------------------------


class FeaturizerServicer(featurizer_pb2_grpc.FeaturizerServiceServicer):
    """FeaturizerService over one FeaturizerCore (whose transform cache every call shares)."""

    def __init__(self, core: FeaturizerCore) -> None:
        self.core = core

    def Fit(
        self, request: featurizer_pb2.FitRequest, context: grpc.ServicerContext
    ) -> featurizer_pb2.TransformInfo:
        """Fit on a label run's train split; answers the new transform with its label run."""
        config = _feature_config(request.config) if request.HasField("config") else None
        make_current = request.make_current if request.HasField("make_current") else True
        fitted, run_id = self.core.fit(
            request.label_run or None,
            config,
            task=request.task or None,
            make_current=make_current,
        )
        info = self._info(fitted.version, fitted.dim)
        info.label_run = run_id
        return info

    def Featurize(
        self, request: featurizer_pb2.FeaturizeRequest, context: grpc.ServicerContext
    ) -> featurizer_pb2.FeaturizeResponse:
        """Sparse vectors for the request's instances, in order."""
        instances = request.instances
        texts = [instance.text for instance in instances]
        for position, text in enumerate(texts):
            if len(text) > MAX_TEXT_CHARS:
                raise InvalidInput(
                    f"instances[{position}].text has {len(text)} characters; "
                    f"the limit is {MAX_TEXT_CHARS}",
                    details={"field": f"instances[{position}].text", "limit": MAX_TEXT_CHARS},
                )
        metadata = None
        # The core refuses empty and oversized batches before it reads metadata:
        # leave the conversion out then, so a huge batch is refused cheaply.
        if 0 < len(instances) <= self.core.settings.max_instances:
            metadata = [struct_to_dict(instance.metadata) for instance in instances]
        featurized = self.core.featurize(texts, metadata, request.transform or None)
        batch = featurized.batch
        truncated = batch.truncated.tolist()
        vectors = []
        for row in range(len(texts)):
            indices, values = batch.row(row)
            # tolist gives Python floats that hold each float32 exactly; the float
            # field stores them back as the same float32 bits.
            vectors.append(
                featurizer_pb2.SparseVector(
                    indices=indices.tolist(), values=values.tolist(), truncated=truncated[row]
                )
            )
        return featurizer_pb2.FeaturizeResponse(
            transform=featurized.version, dim=batch.dim, vectors=vectors
        )

    def GetTransform(
        self, request: featurizer_pb2.GetTransformRequest, context: grpc.ServicerContext
    ) -> featurizer_pb2.TransformInfo:
        """A stored transform's description (the current one when no version is named)."""
        transform = self.core.transform(request.version or None)
        return self._info(transform.version, transform.dim)

    def _info(self, version: str, dim: int) -> featurizer_pb2.TransformInfo:
        description = self.core.describe(version)
        info = featurizer_pb2.TransformInfo(
            version=version, dim=dim, current=bool(description.current)
        )
        info.description.update(_json_safe(description.to_json()))
        return info


def _feature_config(struct: struct_pb2.Struct) -> FeatureConfig:
    """The Struct validated into a FeatureConfig; a bad field is ValidationFailed naming it."""
    try:
        return FeatureConfig.model_validate(struct_to_dict(struct))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ValidationFailed(
            f"invalid config: {flat_errors(exc, 'config')}",
            details={"errors": _json_safe(errors)},
        ) from None


def build_grpc_server(
    settings: FeaturizerSettings, core: FeaturizerCore, *, host: str, edge: EdgeSettings
) -> GrpcServer:
    """The featurizer's gRPC server on ``host:settings.grpc_port``, bound, not started.

    ``edge`` holds the keys and limits it enforces.
    """
    return build_server(
        port=settings.grpc_port,
        host=host,
        servicers=[
            (featurizer_pb2_grpc.add_FeaturizerServiceServicer_to_server, FeaturizerServicer(core))
        ],
        service_names=[SERVICE_NAME],
        method_scopes=METHOD_SCOPES,
        edge=edge,
    )


# -- latency measurement ---------------------------------------------------------------------

_WORDS = (
    "the you this page article talk edit please thanks wikipedia not is are was stupid idiot "
    "source sources citation agree disagree vandalism revert block user discussion about why "
    "what good bad great terrible hate love really just think know people delete keep policy"
).split()
WARMUP_CALLS = 50


def sample_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` varied comment-like texts of 3 to 60 words, the same ones for the same seed."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 60))).capitalize() + "."
        for _ in range(n)
    ]


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _start_on_free_port(transform_root: Path, version: str) -> tuple[GrpcServer, str]:
    """Start the server on a free loopback port (a port taken in between is retried).

    Returns it with the key to call it with: this process's service key.
    """
    for attempt in range(3):
        settings = load_settings(
            artifacts_dir=transform_root,
            host="127.0.0.1",
            featurizer_grpc_port=_free_port("127.0.0.1"),
        )
        core = core_for(settings)
        core.transform(version)  # load before timing, and fail early on a missing version
        try:
            server = build_grpc_server(
                settings.featurizer, core, host=settings.host, edge=settings.edge
            ).start()
            return server, settings.edge.service_key
        except Unavailable:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def measure_featurize_p50_ms(transform_root: Path, version: str, n: int = 500) -> float:
    """Median latency (ms) of ``n`` single-comment Featurize calls over loopback gRPC.

    Starts a server whose artifact root is ``transform_root``, warms it up, then
    times each call (client serialization, the round trip, the server's work,
    client parsing) over one channel, with a different text each time. The
    server is stopped before returning. ``version`` is named in every request,
    so the root needs no current transform.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    server, key = _start_on_free_port(Path(transform_root), version)
    metadata = bearer_metadata(key)
    try:
        requests = [
            featurizer_pb2.FeaturizeRequest(
                instances=[featurizer_pb2.FeaturizeRequest.Instance(text=text)],
                transform=version,
            )
            for text in sample_texts(WARMUP_CALLS + n)
        ]
        with channel(server.address) as chan:
            featurize = featurizer_pb2_grpc.FeaturizerServiceStub(chan).Featurize
            for request in requests[:WARMUP_CALLS]:
                featurize(request, timeout=10, metadata=metadata)
            timings = []
            for request in requests[WARMUP_CALLS:]:
                started = time.perf_counter()
                featurize(request, timeout=10, metadata=metadata)
                timings.append(time.perf_counter() - started)
    finally:
        server.stop(grace=None)
    return statistics.median(timings) * 1000.0
