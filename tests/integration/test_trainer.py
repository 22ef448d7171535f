"""The trainer service over real HTTP with the real broker and store, on small generated data."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from mlcycle.common.http import BackgroundServer
from mlcycle.common.kafka.producer import RecordProducer
from mlcycle.common.settings import Settings
from mlcycle.common.store import COMMENTS, RUNS, VOTES, Store, open_store
from mlcycle.common.worker import JobWorker
from mlcycle.contracts.comments import Comment, Vote
from mlcycle.contracts.label_runs import RunParams
from mlcycle.contracts.monitoring import PROFILE_FILE
from mlcycle.contracts.serving import serving_config_path
from mlcycle.featurization.store import TransformStore
from mlcycle.labeler.runs import LabelRunner
from mlcycle.monitoring.profile import read_profile
from mlcycle.trainer.api import create_app, kafka_emitter
from mlcycle.trainer.export import WARMUP_FILE, ServingModel, read_metadata
from mlcycle.trainer.jobs import JobRunner
from mlcycle.trainer.registry import ModelRegistry
from mlcycle.trainer.serving_config import parse_serving_config
from mlcycle.trainer.stages.context import JobEnvironment
from tests.fixtures.broker import read_all
from tests.fixtures.embeddings import DIM, write_tiny

pytestmark = pytest.mark.integration

WORDS = "thanks for the edit please cite a source revert page talk article help".split()
RUDE = ["idiot", "stupid", "moron"]
SMALL_SEARCH = {
    "features": ["current"],
    "hidden_units": [8, 16],
    "hidden_layers": 1,
    "dropout": 0.0,
    "learning_rate": 0.03,
    "batch_size": 32,
    "epochs": 3,
}


def seed(
    store: Store, prefix: str, *, rude: bool = True, n: int = 300, source: str | None = None
) -> None:
    rng = np.random.default_rng(len(prefix))
    comments, votes = [], []
    for i in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(3, 15))))
        toxic = rude and rng.random() < 0.4
        if toxic:
            words.insert(int(rng.integers(0, len(words))), str(rng.choice(RUDE)))
        item = f"{prefix}{i:04d}"
        comments.append(
            Comment(id=item, text=" ".join(words), source=source, metadata={"lang": "en"})
        )
        votes += [Vote(item_id=item, annotator_id=f"w{k}", label=int(toxic)) for k in range(3)]
    store.upsert(COMMENTS, [c.to_document() for c in comments])
    store.upsert(VOTES, [v.to_document() for v in votes])


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    store = open_store(settings.store)
    yield store
    store.close()


def label(settings: Settings, store: Store, task: str = "toxicity") -> str:
    with RecordProducer(settings.kafka) as producer:
        runner = LabelRunner(settings.labeler, store, producer, topic=settings.kafka.topics.labels)
        params = RunParams(strategy="majority", task=task)
        return runner.execute(runner.create(params).id).id


@pytest.fixture
def service(settings: Settings, store: Store) -> Iterator[str]:
    with RecordProducer(settings.kafka, client_id="trainer-test") as producer:
        registry = ModelRegistry(
            settings.trainer, store, kafka_emitter(settings.kafka.topics.models, producer)
        )
        worker = JobWorker(
            JobRunner(settings.trainer, store, registry, JobEnvironment.of(settings)),
            name="train-jobs",
        ).start()
        app = create_app(settings, store=store, worker=worker, registry=registry)
        server = BackgroundServer(app, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{server.port}"
        server.stop()
        worker.stop()


def wait_job(base: str, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("succeeded", "failed"):
            return dict(job)
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def warmup_requests(folder: Path) -> list[tuple[str, int]]:
    """Signature and rows of each Predict request in the version's TF Serving warm-up file."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(str(folder / WARMUP_FILE)):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        rows = request.inputs["values"].tensor_shape.dim[0].size
        requests.append((request.model_spec.signature_name, rows))
    return requests


def test_a_job_searches_blesses_exports_and_registers(
    service: str, settings: Settings, store: Store
) -> None:
    seed(store, "c", source="forum")
    run = label(settings, store)
    config = {"trials": 2, "search": SMALL_SEARCH, "source_weights": {"forum": 2.0}}
    started = httpx.post(f"{service}/v1/jobs", json=config, timeout=10)
    assert started.status_code == 202, started.text
    assert started.json()["label_run"] == run
    job = wait_job(service, started.json()["id"])
    assert job["status"] == "succeeded", job.get("error")
    result = job["result"]
    assert result["dev"]["roc_auc"] > 0.9 and result["test"]["n"] > 0
    assert job["progress"]["trials_done"] == 2

    model = result["model"]
    assert (model["version"], model["state"]) == (1, "production")
    folder = settings.trainer.models_dir / settings.trainer.model_name / "1"
    lineage = read_metadata(folder)
    assert lineage["transform"] == result["transform"] and lineage["label_run"] == run
    assert lineage["data"]["train"]["rows"] > 0 and lineage["hyperparameters"]["hidden_units"]
    # Each row's source came through the shards: the weights, the lineage and the slices.
    assert lineage["training"]["source_weights"] == {"forum": 2.0}
    assert lineage["training"]["sources"]["train"] == {"forum": lineage["data"]["train"]["rows"]}
    assert result["dev"]["slices"]["source"]["forum"]["n"] == result["dev"]["n"]
    assert lineage["metrics"]["dev"]["roc_auc"] == pytest.approx(result["dev"]["roc_auc"])
    assert lineage["blessing"]["blessed"] and lineage["git_revision"]
    # The behavioural suite (the checkout's) was scored with the threshold it serves with.
    assert lineage["behaviour"] == result["behaviour"] and result["behaviour"]["cases"] >= 300
    assert lineage["blessing"]["behaviour"]["compared"] == "no production model to compare with"
    # The winner was offered its linear companion; the lineage says what was decided.
    assert lineage["blend"] == result["blend"] and lineage["blend"]["metric"] == "roc_auc"
    # The served threshold is chosen for the default deployment prior, not dev's 40 %.
    policy = lineage["threshold_policy"]
    assert policy["applied"] and policy["deployment_prior"] == 0.1 == policy["score_prior"]
    assert lineage["threshold"] == policy["threshold"] == 0.5
    assert policy["dev_prior"] == pytest.approx(0.4, abs=0.15)
    assert policy["calibration"]["method"] == "platt"
    assert {"precision", "recall", "flagged_rate"} <= set(policy["implied"]["dev"])
    assert "test" in policy["implied"]
    assert lineage["metrics"]["dev"]["threshold"] == 0.5
    # The monitor's reference: the dev split as this version saw it, named in the lineage.
    profile = read_profile(folder)
    assert profile is not None and profile.rows == lineage["data"]["dev"]["rows"]
    assert lineage["profile"]["sha256"] == sha256((folder / PROFILE_FILE).read_bytes()).hexdigest()
    assert (profile.model_version, profile.transform) == (1, lineage["transform"])
    assert (profile.threshold, profile.score_prior) == (0.5, policy["score_prior"])
    assert sum(profile.score.counts) == profile.rows and profile.oov is not None
    assert "oov_share" in lineage["profile"]["signals"]
    # The registry's record names the same profile.
    registered = httpx.get(f"{service}/v1/models/1", timeout=10).json()
    assert registered["profile"] == lineage["profile"]
    probs = ServingModel(folder).probabilities(
        np.array([[0, 1, 2]], np.int64), np.array([[0.5, 0.5, 0.0]], np.float32)
    )
    assert probs.shape == (1, 2) and abs(float(probs.sum()) - 1) < 1e-5
    sizes = (1, min(64, lineage["data"]["dev"]["rows"]))
    signatures = ("serving_default", "explain")
    assert warmup_requests(folder) == [(s, n) for s in signatures for n in sizes]
    config = serving_config_path(settings.trainer.models_dir).read_text(encoding="utf-8")
    assert {n: m.stable for n, m in parse_serving_config(config).items()} == {
        settings.trainer.model_name: 1
    }

    trials = httpx.get(f"{service}/v1/jobs/{job['id']}/trials", timeout=10).json()["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete"]
    assert all(t["dev"]["roc_auc"] > 0 and t["params"]["hidden_units"] for t in trials)
    report = httpx.get(f"{service}/v1/jobs/{job['id']}/report", timeout=10)
    assert report.status_code == 200 and "data:image/png;base64" in report.text
    assert "linear blend" in report.text and "Behavioural suite" in report.text
    assert "served threshold" in report.text and "at a positive rate of 0.1 (dev)" in report.text
    listed = httpx.get(f"{service}/v1/models", timeout=10).json()
    assert listed["production"] == {settings.trainer.model_name: 1}
    events = [orjson.loads(r.value) for r in read_all(settings, settings.kafka.topics.models)]
    assert [e["event"] for e in events] == ["registered", "blessed", "promoted"]

    # A second job must beat production, re-scored on the same dev items.
    second = httpx.post(
        f"{service}/v1/jobs", json={"trials": 1, "search": SMALL_SEARCH}, timeout=10
    ).json()
    done = wait_job(service, second["id"])
    assert done["status"] == "succeeded", done.get("error")
    judged = done["result"]["model"]
    assert judged["version"] == 2
    assert "production v1" in judged["reason"]
    doc = httpx.get(f"{service}/v1/models/2", timeout=10).json()
    assert doc["blessing"]["compared_to"] == 1
    assert doc["blessing"]["measured"] == "re-scored on this dev split"
    compared = doc["blessing"]["behaviour"]["compared"]
    assert compared == "production v1's rates recorded in its metadata.json on this suite"
    if judged["state"] == "unblessed":
        assert not (settings.trainer.models_dir / settings.trainer.model_name / "2").exists()
    else:
        assert judged["state"] == "production"


def test_a_job_with_static_embeddings_trains_serves_and_records_them(
    service: str, settings: Settings, store: Store
) -> None:
    seed(store, "e")
    label(settings, store)
    artifacts = settings.featurizer.artifacts_dir
    ident = write_tiny(artifacts)  # stands for `mlcycle embeddings distill`'s artifact
    search = {**SMALL_SEARCH, "features": ["words+chars+embeddings"]}
    started = httpx.post(f"{service}/v1/jobs", json={"trials": 1, "search": search}, timeout=10)
    assert started.status_code == 202, started.text
    job = wait_job(service, started.json()["id"])
    assert job["status"] == "succeeded", job.get("error")
    transform = TransformStore(artifacts).transform(job["result"]["transform"])
    assert transform.embeddings is not None and transform.embeddings.ident == ident
    assert transform.config.embeddings.enabled and transform.embeddings_dim == DIM
    folder = settings.trainer.models_dir / settings.trainer.model_name / "1"
    assert read_metadata(folder)["transform"] == transform.version
    # The exported model reads the dense block: its scores move with the embedding columns.
    batch = transform.apply(["thanks for the edit", "you idiot"])
    width = int(np.diff(batch.indptr).max())
    indices = np.zeros((2, width), np.int64)
    values = np.zeros((2, width), np.float32)
    for i in range(2):
        row_indices, row_values = batch.row(i)
        indices[i, : len(row_indices)] = row_indices
        values[i, : len(row_values)] = row_values
    model = ServingModel(folder)
    before = model.probabilities(indices, values)
    embedded = (indices >= transform.dim - DIM) & (values != 0)
    assert embedded.sum(axis=1).tolist() == [DIM, DIM]
    values[embedded] *= -1.0
    assert not np.allclose(model.probabilities(indices, values), before)


def test_bad_jobs_are_refused_or_fail_with_a_reason(
    service: str, settings: Settings, store: Store
) -> None:
    bad = httpx.post(f"{service}/v1/jobs", json={"trials": 0}, timeout=10)
    assert bad.status_code == 422 and "trials" in bad.text
    bad = httpx.post(
        f"{service}/v1/jobs", json={"search": {"learning_rate": {"low": 1, "high": 0.1}}}
    )
    assert bad.status_code == 422 and "learning_rate" in bad.text
    for weights in ({"davidson": -1}, ["davidson"], {"davidson": "heavy"}):
        bad = httpx.post(f"{service}/v1/jobs", json={"source_weights": weights}, timeout=10)
        assert bad.status_code == 422 and "source_weights" in bad.text
    missing = httpx.post(f"{service}/v1/jobs", json={"label_run": "lr-nope"}, timeout=10)
    assert missing.status_code == 404 and "lr-nope" in missing.text

    seed(store, "calm", rude=False)
    run = label(settings, store)
    started = httpx.post(
        f"{service}/v1/jobs", json={"label_run": run, "search": SMALL_SEARCH}, timeout=10
    )
    job = wait_job(service, started.json()["id"])
    assert job["status"] == "failed"
    assert "single class" in job["error"]
    assert httpx.get(f"{service}/v1/jobs/tj-none", timeout=10).status_code == 404


def test_train_command_prints_trials_and_report(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    """``mlcycle train`` in-process: the table, the model line and the report path."""
    from rich.console import Console

    from mlcycle.trainer.cli import parse_config, run_train_command

    seed(store, "t")
    label(settings, store)
    config_file = tmp_path / "job.json"
    config_file.write_text(json.dumps({"search": SMALL_SEARCH}), encoding="utf-8")
    config = parse_config(config_path=config_file, overrides={"trials": 1})
    console = Console(record=True, width=160)
    job = run_train_command(settings, console, config=config, resume=None)
    text = console.export_text()
    assert "Trials (selected on dev roc_auc)" in text
    assert "model toxicity v1: production" in text
    assert "linear blend: " in text
    assert "behavioural suite: " in text and "worst capability" in text
    assert Path(job.result.report).is_file() and job.result.report in text


def test_a_new_label_run_starts_a_job_when_configured(settings: Settings, store: Store) -> None:
    from mlcycle.trainer.api import LabelRunWatcher

    seed(store, "w")
    first = label(settings, store)
    submitted: list[str] = []

    class Recorder(JobWorker):
        def submit(self, job_id: str) -> None:
            submitted.append(job_id)

    with RecordProducer(settings.kafka, client_id="trainer-test") as producer:
        registry = ModelRegistry(
            settings.trainer, store, kafka_emitter(settings.kafka.topics.models, producer)
        )
        worker = Recorder(
            JobRunner(settings.trainer, store, registry, JobEnvironment.of(settings)),
            name="train-jobs",
        )
        watcher = LabelRunWatcher(settings.labeler.task, store, worker)
        assert watcher.check() is None  # the run that existed at start-up is not new
        second = label(settings, store)
        job_id = watcher.check()
        assert job_id is not None and submitted == [job_id]
        assert watcher.check() is None  # one job per new run
    job = store.get(RUNS, job_id)
    assert job["label_run"] == second != first and job["status"] == "queued"
