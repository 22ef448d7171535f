"""The featurizer's gRPC API over real loopback calls: parity, errors, Fit, health, reflection."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from mlcycle.common.grpc import ERROR_METADATA_KEY, GrpcServer, channel
from mlcycle.common.settings import Settings, load_settings
from mlcycle.common.store import COMMENTS, LABELS, RUNS, Store, open_store
from mlcycle.contracts.comments import MAX_TEXT_CHARS
from mlcycle.contracts.label_runs import LabelRun
from mlcycle.contracts.repositories.label_runs import LabelRuns
from mlcycle.featurization.config import FeatureConfig
from mlcycle.featurization.transform import Transform, fit
from mlcycle.featurizer.grpc_api import (
    SERVICE_NAME,
    build_grpc_server,
    measure_featurize_p50_ms,
    struct_to_dict,
)
from mlcycle.featurizer.service import FeaturizerCore, core_for
from mlcycle.protos.mlcycle.v1 import featurizer_pb2, featurizer_pb2_grpc

pytestmark = pytest.mark.integration

Instance = featurizer_pb2.FeaturizeRequest.Instance
FEATURIZE = f"/{SERVICE_NAME}/Featurize"
MAX_INSTANCES = 20
MAX_CHARS = 400
RUN_ID = "lr-20250101T000000-abcdef"
WORDS = "thanks for the edit please cite a source you idiot stupid revert page talk".split()
# Small groups keep the fit quick; a short max_chars makes truncation easy to reach.
CONFIG = FeatureConfig.model_validate(
    {
        "preprocess": {"max_chars": MAX_CHARS},
        "word": {"min_count": 1},
        "char": {"buckets": 4096},
    }
)


def corpus(n: int = 80) -> tuple[list[str], list[dict[str, object]]]:
    """Comment-like texts with heterogeneous metadata (a numeric, a boolean, a category)."""
    rng = np.random.default_rng(7)
    texts, metadata = [], []
    for i in range(n):
        texts.append(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 20)))))
        meta: dict[str, object] = {
            "year": int(rng.integers(2001, 2016)),
            "logged_in": bool(rng.random() < 0.5),
            "ns": "user" if i % 3 else "article",
        }
        if i % 7 == 0:
            meta.pop("year")
        metadata.append(meta)
    return texts, metadata


def seed_label_run(store: Store, texts: list[str], metadata: list[dict[str, object]]) -> None:
    """Comments plus a succeeded label run with its labels, as the labeler writes them."""
    comments = [
        {"id": f"c{i:03d}", "text": t, "source": "test", "created_at": None, "metadata": m}
        for i, (t, m) in enumerate(zip(texts, metadata, strict=True))
    ]
    labels = [
        {
            "id": f"{RUN_ID}:{c['id']}",
            "run": RUN_ID,
            "item_id": c["id"],
            "task": "toxicity",
            "label": int("idiot" in c["text"]),
            "probability": 1.0,
            "method": "majority",
            "n_votes": 3,
            "split": "train" if i % 10 < 8 else "dev",
        }
        for i, c in enumerate(comments)
    ]
    run = {"id": RUN_ID, "kind": "label", "task": "toxicity", "status": "succeeded"}
    store.upsert(COMMENTS, comments)
    store.upsert(LABELS, labels)
    store.upsert(RUNS, [run])
    LabelRuns(store).mark_latest(LabelRun.model_validate(run))
    store.refresh()


@dataclass
class Env:
    """What the tests share: the settings, the fitted transform, the core and the live server."""

    settings: Settings
    store: Store
    transform: Transform
    core: FeaturizerCore
    server: GrpcServer


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("featurizer-grpc")
    settings = load_settings(
        data_dir=data,
        host="127.0.0.1",
        featurizer_grpc_port=0,
        featurize_max_instances=MAX_INSTANCES,
        grpc_reflection=True,
    )
    texts, metadata = corpus()
    transform = fit(texts, metadata, CONFIG)
    transform.save(settings.featurizer.artifacts_dir)
    store = open_store(settings.store)
    seed_label_run(store, texts, metadata)
    core = core_for(settings, store)
    core.set_current(transform.version)
    server = build_grpc_server(
        settings.featurizer, core, host=settings.host, edge=settings.edge
    ).start()
    yield Env(settings, store, transform, core, server)
    server.stop(grace=None)
    store.close()


@pytest.fixture
def chan(env: Env) -> Iterator[grpc.Channel]:
    with channel(env.server.address) as ch:
        yield ch


@pytest.fixture
def stub(chan: grpc.Channel) -> featurizer_pb2_grpc.FeaturizerServiceStub:
    return featurizer_pb2_grpc.FeaturizerServiceStub(chan)


def featurize_request(
    texts: list[str], metadata: list[dict[str, object]] | None = None, transform: str = ""
) -> featurizer_pb2.FeaturizeRequest:
    request = featurizer_pb2.FeaturizeRequest(transform=transform)
    for i, text in enumerate(texts):
        instance = request.instances.add(text=text)
        if metadata is not None:
            instance.metadata.update(metadata[i])
    return request


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    return caught.value


def error_body(err: grpc.RpcError) -> dict:
    return orjson.loads(dict(err.trailing_metadata())[ERROR_METADATA_KEY])["error"]


def same_bits(vector: featurizer_pb2.SparseVector, expected: tuple[np.ndarray, np.ndarray]) -> bool:
    """Same indices and bit-identical float32 values."""
    indices = np.asarray(vector.indices, np.int32)
    values = np.asarray(vector.values, np.float32)
    return np.array_equal(indices, expected[0]) and values.tobytes() == expected[1].tobytes()


# -- Featurize ---------------------------------------------------------------------------------


def test_featurize_is_bit_identical_to_the_in_process_transform(env: Env, stub) -> None:
    texts = [
        "thanks for the edit",
        "you idiot, revert that page!!",
        "Ünïcode text with émoji 🙂 and &amp; entities",
        "",
        "please cite a source",
    ]
    metadata: list[dict[str, object]] = [
        {"year": 2015, "logged_in": True, "ns": "user"},
        {"year": 2003.5, "logged_in": False},
        {"ns": "article"},
        {},
        {"year": None, "logged_in": "maybe", "ns": 3},
    ]
    reply = stub.Featurize(featurize_request(texts, metadata), timeout=10)
    expected = env.transform.apply(texts, metadata, unknown_fields="error")
    assert reply.transform == env.transform.version
    assert reply.dim == env.transform.dim
    assert len(reply.vectors) == len(texts)
    for row, vector in enumerate(reply.vectors):
        assert same_bits(vector, expected.row(row)), row
        assert len(vector.indices) > 0 or texts[row] == ""
        assert vector.truncated is False


def test_struct_numbers_reach_the_transform_as_json_numbers_would(env: Env, stub) -> None:
    # Struct carries 2015 as the double 2015.0; the vector must equal the one for the int.
    reply = stub.Featurize(featurize_request(["hello"], [{"year": 2015.0}]), timeout=10)
    expected = env.transform.apply(["hello"], [{"year": 2015}])
    assert same_bits(reply.vectors[0], expected.row(0))


def test_a_named_version_is_used_and_the_default_is_current(env: Env, stub) -> None:
    named = stub.Featurize(featurize_request(["x"], transform=env.transform.version), timeout=10)
    default = stub.Featurize(featurize_request(["x"]), timeout=10)
    assert named.transform == default.transform == env.core.current_version()
    assert named.vectors == default.vectors


def test_a_long_text_comes_back_truncated(env: Env, stub) -> None:
    long_text = "please cite a source " * 100
    assert len(long_text) > MAX_CHARS
    reply = stub.Featurize(featurize_request([long_text, "short"]), timeout=10)
    assert [v.truncated for v in reply.vectors] == [True, False]
    assert same_bits(reply.vectors[0], env.transform.apply([long_text]).row(0))


def test_unknown_version_is_not_found_naming_it(stub) -> None:
    err = rpc_error(stub.Featurize, featurize_request(["x"], transform="tf-0000000000000000"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "tf-0000000000000000" in err.details()
    assert error_body(err)["details"]["version"] == "tf-0000000000000000"


def test_unknown_metadata_field_is_invalid_argument_naming_it(stub) -> None:
    request = featurize_request(["x", "y"], [{"year": 2010}, {"colour": "red"}])
    err = rpc_error(stub.Featurize, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "colour" in err.details()
    assert error_body(err)["details"]["unknown_fields"] == ["colour"]


def test_empty_instances_are_invalid_argument(stub) -> None:
    err = rpc_error(stub.Featurize, featurizer_pb2.FeaturizeRequest())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no instances" in err.details()


def test_too_many_instances_are_resource_exhausted(stub) -> None:
    err = rpc_error(stub.Featurize, featurize_request(["x"] * (MAX_INSTANCES + 1)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"limit is {MAX_INSTANCES}" in err.details()


def test_a_text_over_the_size_limit_is_invalid_argument(stub) -> None:
    err = rpc_error(stub.Featurize, featurize_request(["ok", "x" * (MAX_TEXT_CHARS + 1)]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "instances[1].text" in err.details()


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        # instances[0].text = b"\xff\xfe": invalid UTF-8 in a proto3 string field.
        (b"\x0a\x04\x0a\x02\xff\xfe", "UTF-8"),
        # A length prefix promising more bytes than follow.
        (b"\x0a\x40\x0a\x02hi", "could not be parsed"),
    ],
)
def test_an_unparseable_request_is_invalid_argument(
    chan: grpc.Channel, stub, raw: bytes, needle: str
) -> None:
    call = chan.unary_unary(
        FEATURIZE, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    err = rpc_error(call, raw)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.details()
    assert error_body(err)["code"] == "invalid_input"
    # The server is unharmed and the same channel still works.
    assert stub.Featurize(featurize_request(["fine"]), timeout=10).vectors


# -- GetTransform ------------------------------------------------------------------------------


def test_get_transform_returns_the_description(env: Env, stub) -> None:
    for version in ("", env.transform.version):
        info = stub.GetTransform(featurizer_pb2.GetTransformRequest(version=version), timeout=10)
        assert info.version == env.transform.version
        assert info.dim == env.transform.dim
        assert info.current is True
        assert not info.HasField("label_run")
        assert (
            struct_to_dict(info.description) == env.core.describe(env.transform.version).to_json()
        )


def test_get_transform_of_an_unknown_version_is_not_found(stub) -> None:
    request = featurizer_pb2.GetTransformRequest(version="tf-ffffffffffffffff")
    err = rpc_error(stub.GetTransform, request)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "tf-ffffffffffffffff" in err.details()


# -- Fit ---------------------------------------------------------------------------------------


def test_fit_on_the_latest_run_with_a_struct_config(env: Env, stub) -> None:
    request = featurizer_pb2.FitRequest(make_current=False)
    # Numbers arrive as doubles; integer fields must still accept them.
    request.config.update({"word": {"min_count": 1}, "char": {"buckets": 2048, "ngram_max": 3}})
    info = stub.Fit(request, timeout=60)
    assert info.label_run == RUN_ID
    assert info.version.startswith("tf-") and info.version != env.transform.version
    assert info.current is False
    assert env.core.current_version() == env.transform.version
    description = struct_to_dict(info.description)
    assert description["config"]["char"] == {
        "enabled": True,
        "ngram_min": 2,
        "ngram_max": 3,
        "buckets": 2048,
    }
    assert description["fitted_on"]["texts"] == 64  # the train split: 8 of every 10 items
    reply = stub.Featurize(featurize_request(["thanks"], transform=info.version), timeout=10)
    assert reply.dim == info.dim


def test_fit_with_a_named_run_and_default_config(env: Env, stub) -> None:
    info = stub.Fit(featurizer_pb2.FitRequest(label_run=RUN_ID, make_current=False), timeout=60)
    assert info.label_run == RUN_ID
    # The default config, as a transform describes it: static embeddings are off, so left out.
    default = FeatureConfig().model_dump(mode="json", exclude={"embeddings"})
    assert struct_to_dict(info.description)["config"] == default


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"word": {"min_count": 0}}, "config.word.min_count"),
        ({"colour": "red"}, "config.colour"),
        ({"char": {"ngram_min": 2.5}}, "config.char.ngram_min"),
    ],
)
def test_fit_with_an_invalid_config_is_invalid_argument_naming_the_field(
    stub, config: dict, needle: str
) -> None:
    request = featurizer_pb2.FitRequest()
    request.config.update(config)
    err = rpc_error(stub.Fit, request)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.details()


def test_fit_on_an_unknown_run_is_not_found(stub) -> None:
    err = rpc_error(stub.Fit, featurizer_pb2.FitRequest(label_run="lr-nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "lr-nope" in err.details()


# -- health, reflection, latency ---------------------------------------------------------------


def test_health_is_serving(chan: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(chan)
    for name in ("", SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(chan: grpc.Channel) -> None:
    db = ProtoReflectionDescriptorDatabase(chan)
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= set(db.get_services())
    assert db.FindFileContainingSymbol(SERVICE_NAME).name == "mlcycle/v1/featurizer.proto"


def test_measure_featurize_p50_ms(env: Env, tmp_path: Path) -> None:
    env.transform.save(tmp_path)  # a root without CURRENT: the version is named per call
    p50 = measure_featurize_p50_ms(tmp_path, env.transform.version, n=100)
    # The target is under 2 ms; the bound here only catches gross regressions
    # (per-call loading, a new channel per call) without flaking on a busy machine.
    assert 0 < p50 < 10
