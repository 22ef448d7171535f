"""The featurizer against the real broker and store: fit on a label run, shards, parity, REST."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from mlcycle.common.errors import InvalidInput, NotFound
from mlcycle.common.http import BackgroundServer
from mlcycle.common.infra.process import free_port
from mlcycle.common.kafka.consumer import ConsumerLoop
from mlcycle.common.kafka.lag import group_lag
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, VOTES, Store, open_store
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.contracts.label_runs import RunParams
from mlcycle.featurization.shards import feature_set_dir, read_split
from mlcycle.featurizer.api import create_app
from mlcycle.featurizer.batch import FeatureSetBuilder, PendingWatcher
from mlcycle.featurizer.service import FeaturizerCore, core_for
from mlcycle.labeler.runs import LabelRunner
from tests.fixtures.broker import LoopThread, wait_for
from tests.fixtures.embeddings import DIM, write_tiny

pytestmark = pytest.mark.integration

N_ITEMS = 300
WORDS = "thanks for the edit please cite a source you idiot stupid revert page talk".split()


def seed(store: Store) -> None:
    rng = np.random.default_rng(3)
    comments, votes = [], []
    for i in range(N_ITEMS):
        words = rng.choice(WORDS, size=int(rng.integers(3, 25)))
        meta = {"year": int(rng.integers(2001, 2016)), "logged_in": bool(rng.random() < 0.5)}
        if i % 7 == 0:
            meta.pop("year")  # missing fields map to an explicit missing value
        source = ("alpha", "beta", None)[i % 3]
        comments.append(Comment(id=f"c{i:04d}", text=" ".join(words), source=source, metadata=meta))
        toxic = int("idiot" in words or "stupid" in words)
        votes += [Vote(item_id=f"c{i:04d}", annotator_id=f"w{k}", label=toxic) for k in range(3)]
    store.upsert(COMMENTS, [c.to_document() for c in comments])
    store.upsert(VOTES, [v.to_document() for v in votes])


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings.replace(
        shard_rows=64, featurizer_grpc_port=free_port(), featurize_max_instances=50
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.store)
    yield store
    store.close()


@pytest.fixture
def label_run(settings: Settings, store: Store) -> str:
    seed(store)
    with RecordProducer(settings.kafka) as producer:
        runner = LabelRunner(settings.labeler, store, producer, topic=settings.kafka.topics.labels)
        run = runner.execute(runner.create(RunParams(strategy="majority")).id)
    return run.id


@pytest.fixture
def core(settings: Settings, store: Store, label_run: str) -> FeaturizerCore:
    core = core_for(settings, store)
    core.fit(label_run)
    return core


def identical(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    """Same indices and bit-identical float32 values."""
    return np.array_equal(a[0], b[0]) and np.array_equal(
        np.asarray(a[1], np.float32).view(np.uint32), np.asarray(b[1], np.float32).view(np.uint32)
    )


def test_fit_uses_the_train_split_and_becomes_current(core: FeaturizerCore, store: Store) -> None:
    version = core.current_version()
    assert version is not None and version.startswith("tf-")
    info = core.describe()
    assert info.current is True and info.version == version
    # Fitting again on the same run gives the same content, hence the same version.
    again, _ = core.fit(make_current=False)
    assert again.version == version


def test_feature_set_is_complete_idempotent_and_checked(
    core: FeaturizerCore, store: Store, label_run: str
) -> None:
    manifest = core.build_feature_set(label_run)
    assert manifest.rows == N_ITEMS and manifest.labels_without_comment == 0
    assert set(manifest.splits) == {"train", "dev", "test"}
    assert manifest.transform == core.current_version()
    train = list(read_split(core.root, manifest, "train"))
    assert sum(len(s.features) for s in train) == manifest.splits["train"].rows
    assert all(len(s.item_ids) <= 64 for s in train)
    ids = np.concatenate([s.item_ids for s in train])
    assert list(ids) == sorted(ids)
    # Each row keeps its comment's source for the trainer's weights and slices.
    sources = np.concatenate([s.sources for s in train])
    assert list(sources) == [("alpha", "beta", "")[int(i[1:]) % 3] for i in ids]

    folder = feature_set_dir(core.root, manifest.transform, label_run)
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert core.build_feature_set(label_run) == manifest  # no rebuild
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no leftovers

    shard = folder / manifest.splits["train"].shards[0].file
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(InvalidInput, match="checksum"):
        list(read_split(core.root, manifest, "train"))


def test_a_missing_transform_is_refused_clearly(core: FeaturizerCore) -> None:
    with pytest.raises(NotFound, match="tf-0000000000000000") as caught:
        core.featurize(["hello"], None, "tf-0000000000000000")
    assert core.current_version() in caught.value.details["available"]


# -- parity: shards, gRPC, REST and in-process give the same bits ------------------------------


@pytest.fixture
def servers(settings: Settings, core: FeaturizerCore, store: Store) -> Iterator[tuple[str, str]]:
    from mlcycle.featurizer.grpc_api import build_grpc_server

    grpc_server = build_grpc_server(
        settings.featurizer, core, host=settings.host, edge=settings.edge
    ).start()
    rest = BackgroundServer(create_app(settings, core=core, store=store), "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{rest.port}", f"127.0.0.1:{settings.featurizer.grpc_port}"
    rest.stop()
    grpc_server.stop(grace=1)


def test_parity_between_shards_grpc_rest_and_in_process(
    core: FeaturizerCore, store: Store, label_run: str, servers: tuple[str, str]
) -> None:
    from mlcycle.protos.mlcycle.v1 import featurizer_pb2, featurizer_pb2_grpc

    rest_url, grpc_address = servers
    manifest = core.build_feature_set(label_run)
    (shard, *_) = read_split(core.root, manifest, "dev")
    ids = [str(i) for i in shard.item_ids]
    comments = store.get_many(COMMENTS, ids)
    texts = [comments[i]["text"] for i in ids]
    metadata = [comments[i]["metadata"] for i in ids]
    in_process = core.transform().apply(texts, metadata)

    rest = httpx.post(
        f"{rest_url}/v1/featurize",
        json={
            "instances": [{"text": t, "metadata": m} for t, m in zip(texts, metadata, strict=True)]
        },
    )
    assert rest.status_code == 200, rest.text
    with grpc.insecure_channel(grpc_address) as channel:
        stub = featurizer_pb2_grpc.FeaturizerServiceStub(channel)
        request = featurizer_pb2.FeaturizeRequest()
        for text, meta in zip(texts, metadata, strict=True):
            instance = request.instances.add(text=text)
            instance.metadata.update(meta)
        reply = stub.Featurize(request, timeout=10)
    assert reply.transform == rest.json()["transform"] == manifest.transform
    for row in range(len(ids)):
        expected = in_process.row(row)
        assert identical(shard.features.row(row), expected)
        vector = rest.json()["vectors"][row]
        assert identical((np.array(vector["indices"]), np.array(vector["values"])), expected)
        grpc_vector = reply.vectors[row]
        assert identical((np.array(grpc_vector.indices), np.array(grpc_vector.values)), expected)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"instances": []}, 400, "no instances"),
        ({"instances": [{"text": "x", "metadata": {"colour": "red"}}]}, 400, "colour"),
        ({"instances": [{"text": "x"}], "transform": "tf-nope"}, 404, "tf-nope"),
        ({"instances": [{"text": "x"}] * 51}, 413, "limit is 50"),
        ({"instances": [{"text": 5}]}, 422, "text"),
        ({"instances": [{"text": "x", "extra": 1}]}, 422, "extra"),
    ],
)
def test_bad_featurize_requests_are_4xx_naming_the_problem(
    servers: tuple[str, str], body: dict, status: int, needle: str
) -> None:
    response = httpx.post(f"{servers[0]}/v1/featurize", json=body)
    assert response.status_code == status, response.text
    assert needle in response.text


def test_invalid_utf8_and_huge_texts(servers: tuple[str, str]) -> None:
    rest_url = servers[0]
    broken = httpx.post(
        f"{rest_url}/v1/featurize",
        content=b'{"instances": [{"text": "\xff\xfe"}]}',
        headers={"content-type": "application/json"},
    )
    assert broken.status_code in (400, 422) and "error" in broken.json()
    huge = "word " * 50_000
    response = httpx.post(f"{rest_url}/v1/featurize", json={"instances": [{"text": huge}]})
    assert response.status_code == 200
    assert response.json()["vectors"][0]["truncated"] is True
    assert response.json()["truncated"] == 1


def test_a_feature_set_path_leading_out_is_a_400_naming_it(
    servers: tuple[str, str], tmp_path: Path
) -> None:
    rest, _ = servers
    for version, label_run in [("%2E%2E", "x"), ("tf-1", "%2E%2E")]:
        answer = httpx.get(f"{rest}/v1/feature-sets/{version}/{label_run}", timeout=10)
        assert answer.status_code == 400, answer.text
        assert "'..'" in answer.json()["error"]["message"]


def test_rest_transforms_and_feature_sets(servers: tuple[str, str], label_run: str) -> None:
    rest_url = servers[0]
    listing = httpx.get(f"{rest_url}/v1/transforms").json()
    assert listing["current"] in listing["versions"]
    assert httpx.get(f"{rest_url}/v1/transforms/current").json()["version"] == listing["current"]
    assert httpx.get(f"{rest_url}/v1/transforms/tf-nope").status_code == 404
    built = httpx.post(f"{rest_url}/v1/feature-sets", json={"label_run": label_run}, timeout=60)
    assert built.status_code == 201, built.text
    assert built.json()["rows"] == N_ITEMS
    items = httpx.get(f"{rest_url}/v1/feature-sets").json()["items"]
    assert [m["label_run"] for m in items] == [label_run]


def test_fitting_with_static_embeddings_needs_them_distilled_first(
    servers: tuple[str, str], core: FeaturizerCore, label_run: str
) -> None:
    rest = servers[0]
    request = {"label_run": label_run, "config": {"embeddings": {"enabled": True}}}
    refused = httpx.post(f"{rest}/v1/transforms", json=request, timeout=60)
    assert refused.status_code == 409, refused.text
    assert "mlcycle embeddings distill" in refused.json()["error"]["message"]

    ident = write_tiny(core.root)  # what `mlcycle embeddings distill` leaves, in miniature
    fitted = httpx.post(f"{rest}/v1/transforms", json=request, timeout=60)
    assert fitted.status_code == 201, fitted.text
    group = fitted.json()["groups"]["embeddings"]
    assert group["artifact"] == ident and group["dim"] == DIM
    version = fitted.json()["version"]
    answer = httpx.post(
        f"{rest}/v1/featurize",
        json={"instances": [{"text": "you are a wonderful person"}], "transform": version},
    ).json()
    (vector,) = answer["vectors"]
    assert vector["indices"][-DIM:] == list(range(group["offset"], group["offset"] + DIM))
    assert np.linalg.norm(vector["values"][-DIM:]) == pytest.approx(1.0, rel=1e-5)


# -- batch: label events drive feature sets ----------------------------------------------------


def test_label_events_build_the_runs_feature_set(
    settings: Settings, core: FeaturizerCore, store: Store, tmp_path: Path
) -> None:
    loop = ConsumerLoop(
        settings.kafka,
        topics=[settings.kafka.topics.labels],
        group_id=settings.featurizer.group_id,
        handler=FeatureSetBuilder(core, store, poll_s=0.1),
        service="featurizer-batch",
    )
    thread = threading.Thread(target=loop.run, kwargs={"install_signal_handlers": False})
    thread.start()
    try:
        # A new item makes the next run publish a label event.
        store.upsert(COMMENTS, [Comment(id="c9999", text="you idiot").to_document()])
        store.upsert(VOTES, [Vote(item_id="c9999", annotator_id="w0", label=1).to_document()])
        with RecordProducer(settings.kafka) as producer:
            runner = LabelRunner(
                settings.labeler, store, producer, topic=settings.kafka.topics.labels
            )
            run = runner.execute(runner.create(RunParams(labeling_functions=[])).id)
        assert run.stats is not None and run.stats.events > 0
        folder = feature_set_dir(core.root, str(core.current_version()), run.id)
        wait_for(lambda: (folder / "manifest.json").is_file(), timeout_s=60)
    finally:
        loop.stop()
        thread.join(15)


def _builder_loop(settings: Settings, builder: FeatureSetBuilder) -> LoopThread:
    return LoopThread(
        ConsumerLoop(
            settings.kafka,
            topics=[settings.kafka.topics.labels],
            group_id=settings.featurizer.group_id,
            handler=builder,
            service="featurizer-batch",
        )
    )


def test_a_run_whose_events_came_before_any_transform_is_built_once_one_is_fitted(
    settings: Settings, store: Store, label_run: str
) -> None:
    topics = [settings.kafka.topics.labels]
    unfitted = core_for(settings, store)
    assert unfitted.current_version() is None
    # The run's label events arrive while no transform exists: remembered, then committed.
    loop = _builder_loop(settings, FeatureSetBuilder(unfitted, store, poll_s=0.1))
    try:
        wait_for(lambda: group_lag(settings.kafka, settings.featurizer.group_id, topics) == 0)
    finally:
        loop.stop()
    # A transform is fitted later (by the API, say), and no label event follows it.
    fitted = core_for(settings, store)
    transform, _ = fitted.fit(label_run)
    # A restarted batch process builds the remembered run without being told again.
    builder = FeatureSetBuilder(core_for(settings, store), store, poll_s=0.1)
    loop = _builder_loop(settings, builder)
    watcher = PendingWatcher(builder, poll_s=0.2).start()
    try:
        folder = feature_set_dir(fitted.root, transform.version, label_run)
        wait_for(lambda: (folder / "manifest.json").is_file(), timeout_s=60)
        assert builder.pending.all() == []
    finally:
        watcher.stop()
        loop.stop()
